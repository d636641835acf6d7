#include "json.h"

#include <charconv>
#include <cmath>
#include <set>
#include <string>

namespace lmustream {

const Json* Json::find(const std::string& key) const {
    if (type != Type::Object) return nullptr;
    for (const auto& member : members) {
        if (member.first == key) return &member.second;
    }
    return nullptr;
}

const char* json_type_name(const Json& value) {
    switch (value.type) {
        case Json::Type::Null: return "null";
        case Json::Type::Bool: return "a boolean";
        case Json::Type::Number: return "a number";
        case Json::Type::String: return "a string";
        case Json::Type::Array: return "an array";
        case Json::Type::Object: return "an object";
    }
    return "unknown";
}

namespace {

class Parser {
  public:
    Parser(const char* data, std::size_t size, int max_depth)
        : p_(data), begin_(data), end_(data + size), max_depth_(max_depth) {}

    Json document() {
        skip_space();
        Json value = parse_value(0);
        skip_space();
        if (p_ != end_) fail("unexpected text after the JSON value");
        return value;
    }

  private:
    const char* p_;
    const char* begin_;
    const char* end_;
    int max_depth_;

    [[noreturn]] void fail(const std::string& why) const {
        throw JsonError("invalid JSON at byte " + std::to_string(p_ - begin_) + ": " + why);
    }

    void skip_space() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }

    bool consume(const char* word) {
        const char* q = p_;
        for (; *word; ++word, ++q) {
            if (q >= end_ || *q != *word) return false;
        }
        p_ = q;
        return true;
    }

    Json parse_value(int depth) {
        if (depth > max_depth_) fail("nested deeper than " + std::to_string(max_depth_) + " levels");
        if (p_ >= end_) fail("unexpected end of input");
        Json value;
        switch (*p_) {
            case '{': parse_object(value, depth); break;
            case '[': parse_array(value, depth); break;
            case '"':
                value.type = Json::Type::String;
                value.text = parse_string();
                break;
            case 't':
            case 'f':
                value.type = Json::Type::Bool;
                if (consume("true")) value.boolean = true;
                else if (consume("false")) value.boolean = false;
                else fail("unknown literal");
                break;
            case 'n':
                if (!consume("null")) fail("unknown literal");
                break;
            default: parse_number(value);
        }
        return value;
    }

    void parse_object(Json& value, int depth) {
        value.type = Json::Type::Object;
        ++p_;  // '{'
        skip_space();
        if (p_ < end_ && *p_ == '}') {
            ++p_;
            return;
        }
        std::set<std::string> seen;
        while (true) {
            skip_space();
            if (p_ >= end_ || *p_ != '"') fail("expected a string key");
            std::string key = parse_string();
            if (!seen.insert(key).second) fail("duplicate key \"" + key + "\"");
            skip_space();
            if (p_ >= end_ || *p_ != ':') fail("expected ':' after a key");
            ++p_;
            skip_space();
            Json member = parse_value(depth + 1);
            value.members.emplace_back(std::move(key), std::move(member));
            skip_space();
            if (p_ >= end_) fail("unterminated object");
            if (*p_ == ',') {
                ++p_;
                continue;
            }
            if (*p_ == '}') {
                ++p_;
                return;
            }
            fail("expected ',' or '}' in an object");
        }
    }

    void parse_array(Json& value, int depth) {
        value.type = Json::Type::Array;
        ++p_;  // '['
        skip_space();
        if (p_ < end_ && *p_ == ']') {
            ++p_;
            return;
        }
        while (true) {
            skip_space();
            value.items.push_back(parse_value(depth + 1));
            skip_space();
            if (p_ >= end_) fail("unterminated array");
            if (*p_ == ',') {
                ++p_;
                continue;
            }
            if (*p_ == ']') {
                ++p_;
                return;
            }
            fail("expected ',' or ']' in an array");
        }
    }

    unsigned hex4() {
        if (end_ - p_ < 4) fail("truncated \\u escape");
        unsigned code = 0;
        for (int i = 0; i < 4; ++i, ++p_) {
            const char c = *p_;
            code <<= 4;
            if (c >= '0' && c <= '9') code |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') code |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') code |= unsigned(c - 'A' + 10);
            else fail("bad hex digit in a \\u escape");
        }
        return code;
    }

    static void append_utf8(std::string& out, unsigned code) {
        if (code < 0x80) {
            out += char(code);
        } else if (code < 0x800) {
            out += char(0xC0 | (code >> 6));
            out += char(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += char(0xE0 | (code >> 12));
            out += char(0x80 | ((code >> 6) & 0x3F));
            out += char(0x80 | (code & 0x3F));
        } else {
            out += char(0xF0 | (code >> 18));
            out += char(0x80 | ((code >> 12) & 0x3F));
            out += char(0x80 | ((code >> 6) & 0x3F));
            out += char(0x80 | (code & 0x3F));
        }
    }

    // Copies one multi-byte UTF-8 character, rejecting invalid, overlong and surrogate forms
    // (RFC 3629): strings reach Python, which only takes valid UTF-8.
    void append_utf8_sequence(std::string& out) {
        const unsigned char lead = static_cast<unsigned char>(*p_);
        int length = 0;
        unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
        if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            if (lead == 0xE0) low = 0xA0;
            if (lead == 0xED) high = 0x9F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            if (lead == 0xF0) low = 0x90;
            if (lead == 0xF4) high = 0x8F;
        } else {
            fail("invalid UTF-8 in a string");
        }
        if (end_ - p_ < length) fail("truncated UTF-8 in a string");
        for (int i = 1; i < length; ++i) {
            const unsigned char c = static_cast<unsigned char>(p_[i]);
            const unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
            if (c < lo || c > hi) fail("invalid UTF-8 in a string");
        }
        out.append(p_, std::size_t(length));
        p_ += length;
    }

    std::string parse_string() {
        ++p_;  // opening quote
        std::string out;
        while (true) {
            if (p_ >= end_) fail("unterminated string");
            const unsigned char c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                ++p_;
                return out;
            }
            if (c < 0x20) fail("control character in a string");
            if (c >= 0x80) {
                append_utf8_sequence(out);
                continue;
            }
            if (c != '\\') {
                out += char(c);
                ++p_;
                continue;
            }
            ++p_;
            if (p_ >= end_) fail("unterminated escape");
            const char e = *p_++;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned code = hex4();
                    if (code >= 0xD800 && code <= 0xDBFF) {  // a surrogate pair
                        if (!consume("\\u")) fail("unpaired surrogate in a \\u escape");
                        const unsigned low = hex4();
                        if (low < 0xDC00 || low > 0xDFFF) fail("bad low surrogate in a \\u escape");
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    } else if (code >= 0xDC00 && code <= 0xDFFF) {
                        fail("unpaired surrogate in a \\u escape");
                    }
                    append_utf8(out, code);
                    break;
                }
                default: fail("unknown escape");
            }
        }
    }

    void parse_number(Json& value) {
        // Validate the RFC 8259 grammar first (from_chars alone would accept "inf", "1." ...).
        const char* start = p_;
        const char* q = p_;
        bool integral = true;
        if (q < end_ && *q == '-') ++q;
        if (q >= end_) fail("expected a value");
        if (*q == '0') {
            ++q;
        } else if (*q >= '1' && *q <= '9') {
            while (q < end_ && *q >= '0' && *q <= '9') ++q;
        } else {
            fail("expected a value");
        }
        if (q < end_ && *q == '.') {
            integral = false;
            ++q;
            if (q >= end_ || *q < '0' || *q > '9') fail("digits expected after '.'");
            while (q < end_ && *q >= '0' && *q <= '9') ++q;
        }
        if (q < end_ && (*q == 'e' || *q == 'E')) {
            integral = false;
            ++q;
            if (q < end_ && (*q == '+' || *q == '-')) ++q;
            if (q >= end_ || *q < '0' || *q > '9') fail("digits expected in an exponent");
            while (q < end_ && *q >= '0' && *q <= '9') ++q;
        }
        double number = 0.0;
        const auto result = std::from_chars(start, q, number);
        if (result.ec == std::errc::result_out_of_range || !std::isfinite(number)) {
            fail("number out of range");
        }
        if (result.ec != std::errc() || result.ptr != q) fail("malformed number");
        value.type = Json::Type::Number;
        value.number = number;
        value.integral = integral;
        p_ = q;
    }
};

}  // namespace

Json parse_json(const char* data, std::size_t size, int max_depth) {
    return Parser(data, size, max_depth).document();
}

}  // namespace lmustream
