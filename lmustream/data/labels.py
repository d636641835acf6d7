"""Label sets of the standard keyword-spotting tasks."""

# The 35 words of Speech Commands v2, in alphabetical order (the class order of the
# LMUFormer / AST recipe's label index file).
SPEECH_COMMANDS_V2_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)

# The standard 12-class task: ten command words, everything else, and background noise.
SPEECH_COMMANDS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_", "_silence_")
