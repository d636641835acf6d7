// Fuzz target of the model-file parser: any byte string must either parse into a model the
// engine can run, or raise ArtifactError; never crash, hang, or read out of bounds (the
// sanitizer builds catch the latter). Used by libFuzzer (clang -fsanitize=fuzzer) and by
// fuzz/driver.cc, a self-contained mutation driver for compilers without libFuzzer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "artifact.h"
#include "engine.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    lmustream::Artifact art;
    try {
        art = lmustream::parse_artifact(data, size, "<fuzz>");
    } catch (const lmustream::ArtifactError&) {
        return 0;  // rejected with a message: the expected outcome for most inputs
    }
    // A file that parses must also load and run: push a little audio through it.
    try {
        const lmustream::Engine engine(art, lmustream::EngineOptions{});
        lmustream::Stream stream(engine);
        std::vector<float> samples(800), out;
        for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = float((i * 37) % 200) / 200.0f - 0.5f;
        stream.push(samples.data(), samples.size(), out);
        stream.flush(out);
    } catch (const lmustream::ArtifactError&) {
        return 0;  // e.g. a batch norm with a negative variance: rejected at load
    }
    return 0;
}
