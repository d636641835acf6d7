// A small strict JSON reader for the model file's headers (RFC 8259).
//
// Written for untrusted input: nesting depth, document size and number syntax are bounded,
// every error names the byte offset, and nothing is read past the given buffer.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lmustream {

class JsonError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct Json {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool boolean = false;
    double number = 0.0;
    bool integral = false;  // the number was written without fraction or exponent
    std::string text;       // String
    std::vector<Json> items;  // Array
    std::vector<std::pair<std::string, Json>> members;  // Object, in file order

    bool is_object() const { return type == Type::Object; }
    bool is_array() const { return type == Type::Array; }
    bool is_string() const { return type == Type::String; }
    bool is_number() const { return type == Type::Number; }
    bool is_bool() const { return type == Type::Bool; }
    // The member named `key`, or nullptr (also for non-objects).
    const Json* find(const std::string& key) const;
};

// Parses exactly one JSON value spanning the whole buffer (whitespace around it allowed).
// Duplicate object keys are an error: a header that names a tensor twice is ambiguous.
Json parse_json(const char* data, std::size_t size, int max_depth = 32);

// A short human-readable name of a value's type, for error messages.
const char* json_type_name(const Json& value);

}  // namespace lmustream
