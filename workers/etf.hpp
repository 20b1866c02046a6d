#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "workers/value.hpp"

// Erlang's External Term Format (version 131) for occasional::Value, and its
// {packet, 4} framing. docs/messages.md is the reference: which tag each kind
// uses, how strings and binaries are told apart, which atoms are values.
namespace occasional::etf {

inline constexpr uint8_t kVersion = 131;
// Largest term in one frame (the 4-byte length excluded).
inline constexpr size_t kMaxFrameBytes = 16 * 1024 * 1024;
inline constexpr size_t kFrameHeaderBytes = 4;

struct Limits {
  // Containers inside containers; the decoder recurses once per level.
  size_t max_depth = 128;
  // Values in one term, containers included: bounds the memory a decoded
  // term takes (a Value is 72 bytes, so 1 Mi values is 72 MiB at most) — a
  // one-byte NIL_EXT element would otherwise cost ~72 times its size.
  size_t max_values = size_t{1} << 20;
};

enum class Errc {
  bad_version,           // the first byte is not 131
  truncated,             // a length or a field runs past the end
  trailing_bytes,        // bytes after a complete term
  unsupported_tag,       // a tag outside the subset (fun, port, compressed, ...)
  unsupported_atom,      // an atom other than undefined/nil/true/false as a value
  bad_atom,              // atom text that is not valid UTF-8 or is over 255 characters
  integer_out_of_range,  // a big integer outside int64
  bad_float,             // NaN or an infinity (Erlang has neither)
  bitstring,             // a BIT_BINARY_EXT whose last byte is not whole
  improper_list,         // a list tail that is not []
  duplicate_key,         // a map with two equal keys
  bad_reference,         // a reference with more than 5 words
  too_deep,              // nesting past Limits::max_depth
  too_many_values,       // more than Limits::max_values
  too_large,             // encode: a size the format cannot carry / a frame over its maximum
  bad_utf8,              // encode: a string (or a node name) that is not valid UTF-8
};

// The reason label for metrics and logs: "truncated", "too_deep", ...
const char* errc_name(Errc code);

struct Error {
  Errc code = Errc::truncated;
  size_t offset = 0;   // byte offset in the input (decode) or in the term (encode)
  std::string detail;  // for a person: what was expected, what was found

  // "truncated at byte 12: INTEGER_EXT needs 4 bytes, 2 left"
  std::string message() const;
};

// Appends the term (version byte first) to `out`. Fails, leaving `out` as it
// was, only for a value the decoder would refuse: a string or node name that
// is not UTF-8, a node name over 255 characters, a NaN or infinity, a
// reference of more than 5 words, more than max_depth or max_values, a size
// over 2^32-1.
bool encode(const Value& value, std::string& out, Error& error, const Limits& limits = {});

// Decodes exactly one whole term. Never trusts the input: every length is
// checked against what remains, depth and value count are bounded, and a
// failure says what and at which byte. Only std::bad_alloc can escape.
std::optional<Value> decode(std::string_view bytes, Error& error, const Limits& limits = {});

// {packet, 4}: a 4-byte big-endian length, then the term. Fails (out
// unchanged) where encode fails or when the term is over max_frame bytes.
bool append_frame(std::string& out, const Value& value, Error& error,
                  size_t max_frame = kMaxFrameBytes, const Limits& limits = {});

struct FrameSplit {
  enum class Status { complete, incomplete, too_large };
  Status status = Status::incomplete;
  std::string_view term;  // complete: the frame's term, to pass to decode
  size_t consumed = 0;    // complete: header + term, to drop from the buffer
  uint32_t length = 0;    // complete or too_large: the length the header says
};

// Looks at the start of a receive buffer. A header saying more than
// max_frame is too_large at once, before its bytes arrive: the stream is then
// unusable (no resynchronisation is possible) and the channel must close.
FrameSplit split_frame(std::string_view buffer, size_t max_frame = kMaxFrameBytes);

}  // namespace occasional::etf
