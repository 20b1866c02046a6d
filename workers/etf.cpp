#include "workers/etf.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

namespace occasional::etf {

namespace {

// Tags from erts/doc/src/erl_ext_dist.xml.
enum Tag : uint8_t {
  kNewFloat = 70,
  kBitBinary = 77,
  kCompressed = 80,
  kAtomCacheRef = 82,
  kNewPid = 88,
  kNewPort = 89,
  kNewerReference = 90,
  kSmallInteger = 97,
  kInteger = 98,
  kFloat = 99,
  kAtom = 100,
  kReference = 101,
  kPort = 102,
  kPid = 103,
  kSmallTuple = 104,
  kLargeTuple = 105,
  kNil = 106,
  kString = 107,
  kList = 108,
  kBinary = 109,
  kSmallBig = 110,
  kLargeBig = 111,
  kNewFun = 112,
  kExport = 113,
  kNewReference = 114,
  kSmallAtom = 115,
  kMap = 116,
  kFun = 117,
  kAtomUtf8 = 118,
  kSmallAtomUtf8 = 119,
  kV4Port = 120,
  kLocal = 121,
};

const char* tag_name(uint8_t tag) {
  switch (tag) {
    case kNewFloat:
      return "NEW_FLOAT_EXT";
    case kBitBinary:
      return "BIT_BINARY_EXT";
    case kCompressed:
      return "compressed term";
    case kAtomCacheRef:
      return "ATOM_CACHE_REF";
    case kNewPid:
      return "NEW_PID_EXT";
    case kNewPort:
      return "NEW_PORT_EXT";
    case kNewerReference:
      return "NEWER_REFERENCE_EXT";
    case kSmallInteger:
      return "SMALL_INTEGER_EXT";
    case kInteger:
      return "INTEGER_EXT";
    case kFloat:
      return "FLOAT_EXT";
    case kAtom:
      return "ATOM_EXT";
    case kReference:
      return "REFERENCE_EXT";
    case kPort:
      return "PORT_EXT";
    case kPid:
      return "PID_EXT";
    case kSmallTuple:
      return "SMALL_TUPLE_EXT";
    case kLargeTuple:
      return "LARGE_TUPLE_EXT";
    case kNil:
      return "NIL_EXT";
    case kString:
      return "STRING_EXT";
    case kList:
      return "LIST_EXT";
    case kBinary:
      return "BINARY_EXT";
    case kSmallBig:
      return "SMALL_BIG_EXT";
    case kLargeBig:
      return "LARGE_BIG_EXT";
    case kNewFun:
      return "NEW_FUN_EXT";
    case kExport:
      return "EXPORT_EXT";
    case kNewReference:
      return "NEW_REFERENCE_EXT";
    case kSmallAtom:
      return "SMALL_ATOM_EXT";
    case kMap:
      return "MAP_EXT";
    case kFun:
      return "FUN_EXT";
    case kAtomUtf8:
      return "ATOM_UTF8_EXT";
    case kSmallAtomUtf8:
      return "SMALL_ATOM_UTF8_EXT";
    case kV4Port:
      return "V4_PORT_EXT";
    case kLocal:
      return "LOCAL_EXT";
  }
  return nullptr;
}

// Erlang's limit on an atom, in characters.
constexpr size_t kMaxAtomChars = 255;

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
// U+10FFFF — what Erlang's unicode module and Python's decode('utf-8') accept.
// Returns the number of code points, or nullopt.
std::optional<size_t> utf8_length(std::string_view s) {
  size_t count = 0;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII eight bytes at a time: most text is.
    if (n - i >= 8) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080u) == 0) {
        i += 8;
        count += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(s[i]);
    ++count;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t extra = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return std::nullopt;
    }
    if (n - i - 1 < extra) return std::nullopt;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return std::nullopt;
    for (size_t k = 2; k <= extra; ++k) {
      const auto ck = static_cast<unsigned char>(s[i + k]);
      if (ck < 0x80 || ck > 0xBF) return std::nullopt;
    }
    i += extra + 1;
  }
  return count;
}

std::string printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (const char c : s.substr(0, kMax)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (s.size() > kMax) out += "...";
  return out;
}

class Encoder {
 public:
  Encoder(std::string& out, const Limits& limits, Error& error)
      : out_(out), start_(out.size()), limits_(limits), error_(error) {}

  bool run(const Value& v) {
    put8(kVersion);
    return term(v, 0);
  }

 private:
  bool fail(Errc code, std::string detail) {
    error_ = Error{code, out_.size() - start_, std::move(detail)};
    return false;
  }

  // Whole fields at once: a push_back per byte costs more than the rest.
  void put(std::initializer_list<uint8_t> bytes) {
    char buf[16];
    size_t n = 0;
    for (const uint8_t b : bytes) buf[n++] = static_cast<char>(b);
    out_.append(buf, n);
  }
  void put8(uint8_t b) { out_.push_back(static_cast<char>(b)); }
  void put16(uint16_t v) { put({static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}); }
  void put32(uint32_t v) {
    put({static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
         static_cast<uint8_t>(v)});
  }

  bool length32(size_t n, const char* what) {
    if (n > std::numeric_limits<uint32_t>::max())
      return fail(Errc::too_large, std::string(what) + " of " + std::to_string(n) +
                                       " does not fit the format's 32-bit length");
    put32(static_cast<uint32_t>(n));
    return true;
  }

  bool container(size_t depth, size_t elements) {
    if (depth + 1 > limits_.max_depth)
      return fail(Errc::too_deep,
                  "nesting deeper than " + std::to_string(limits_.max_depth) + " containers");
    if (elements > limits_.max_values - values_)
      return fail(Errc::too_many_values,
                  "more than " + std::to_string(limits_.max_values) + " values in one term");
    return true;
  }

  void small_atom(std::string_view text) {
    put({kSmallAtomUtf8, static_cast<uint8_t>(text.size())});
    out_ += text;
  }

  bool node_atom(std::string_view text) {
    const std::optional<size_t> chars = utf8_length(text);
    if (!chars) return fail(Errc::bad_utf8, "node name is not UTF-8");
    if (*chars > kMaxAtomChars)
      return fail(Errc::bad_atom, "node name of " + std::to_string(*chars) +
                                      " characters (an atom has at most 255)");
    if (text.size() <= 255) {
      small_atom(text);
    } else {
      put8(kAtomUtf8);
      put16(static_cast<uint16_t>(text.size()));
      out_ += text;
    }
    return true;
  }

  void integer(int64_t i) {
    if (i >= 0 && i <= 255) {
      put({kSmallInteger, static_cast<uint8_t>(i)});
    } else if (i >= std::numeric_limits<int32_t>::min() &&
               i <= std::numeric_limits<int32_t>::max()) {
      put8(kInteger);
      put32(static_cast<uint32_t>(static_cast<int32_t>(i)));
    } else {
      // Magnitude in unsigned arithmetic: -INT64_MIN overflows int64.
      uint64_t magnitude = i < 0 ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
      char buf[3 + 8] = {static_cast<char>(kSmallBig), 0, static_cast<char>(i < 0 ? 1 : 0)};
      size_t n = 0;
      while (magnitude) {
        buf[3 + n++] = static_cast<char>(magnitude);
        magnitude >>= 8;
      }
      buf[1] = static_cast<char>(n);
      out_.append(buf, 3 + n);
    }
  }

  bool sequence(const std::vector<Value>& items, size_t depth) {
    for (const Value& item : items)
      if (!term(item, depth + 1)) return false;
    return true;
  }

  bool term(const Value& v, size_t depth) {
    if (++values_ > limits_.max_values)
      return fail(Errc::too_many_values,
                  "more than " + std::to_string(limits_.max_values) + " values in one term");
    switch (v.kind()) {
      case Value::Kind::null:
        small_atom("undefined");
        return true;
      case Value::Kind::boolean:
        small_atom(*v.as_bool() ? "true" : "false");
        return true;
      case Value::Kind::integer:
        integer(*v.as_int());
        return true;
      case Value::Kind::floating: {
        const double d = *v.as_double();
        if (!std::isfinite(d)) return fail(Errc::bad_float, "NaN or infinity (Erlang has neither)");
        const auto bits = std::bit_cast<uint64_t>(d);
        put8(kNewFloat);
        put32(static_cast<uint32_t>(bits >> 32));
        put32(static_cast<uint32_t>(bits));
        return true;
      }
      case Value::Kind::string: {
        const std::string& s = *v.as_string();
        if (!utf8_length(s)) return fail(Errc::bad_utf8, "string is not UTF-8 (send a binary)");
        put8(kBinary);
        if (!length32(s.size(), "string")) return false;
        out_ += s;
        return true;
      }
      case Value::Kind::binary: {
        // BIT_BINARY_EXT with a whole last byte: Erlang sees a plain binary,
        // and occasional tells it from a string (docs/messages.md).
        const std::string& b = v.as_binary()->bytes;
        put8(kBitBinary);
        if (!length32(b.size(), "binary")) return false;
        put8(b.empty() ? 0 : 8);
        out_ += b;
        return true;
      }
      case Value::Kind::list: {
        const List& l = *v.as_list();
        if (l.empty()) {
          put8(kNil);
          return true;
        }
        if (!container(depth, l.size())) return false;
        put8(kList);
        if (!length32(l.size(), "list") || !sequence(l, depth)) return false;
        put8(kNil);
        return true;
      }
      case Value::Kind::tuple: {
        const Tuple& t = *v.as_tuple();
        if (!container(depth, t.size())) return false;
        if (t.size() <= 255) {
          put({kSmallTuple, static_cast<uint8_t>(t.size())});
        } else {
          put8(kLargeTuple);
          if (!length32(t.size(), "tuple")) return false;
        }
        return sequence(t, depth);
      }
      case Value::Kind::map: {
        const Map& m = *v.as_map();
        if (!container(depth, 2 * m.size())) return false;
        put8(kMap);
        if (!length32(m.size(), "map")) return false;
        for (const auto& [key, value] : m)
          if (!term(key, depth + 1) || !term(value, depth + 1)) return false;
        return true;
      }
      case Value::Kind::address: {
        const Address& a = *v.as_address();
        put8(kNewPid);
        if (!node_atom(a.node)) return false;
        put32(a.id);
        put32(a.serial);
        put32(a.creation);
        return true;
      }
      case Value::Kind::reference: {
        const Reference& r = *v.as_reference();
        if (r.size > Reference::kMaxWords)
          return fail(Errc::bad_reference,
                      "reference of " + std::to_string(r.size) + " words (at most 5)");
        put8(kNewerReference);
        put16(r.size);
        if (!node_atom(r.node)) return false;
        put32(r.creation);
        for (size_t k = 0; k < r.size; ++k) put32(r.words[k]);
        return true;
      }
    }
    return fail(Errc::unsupported_tag, "unknown value kind");
  }

  std::string& out_;
  const size_t start_;
  const Limits& limits_;
  Error& error_;
  size_t values_ = 0;
};

class Decoder {
 public:
  Decoder(std::string_view in, const Limits& limits, Error& error)
      : in_(in), limits_(limits), error_(error) {}

  std::optional<Value> run() {
    if (in_.empty()) {
      fail(Errc::truncated, 0, "empty input, expected the version byte 131");
      return std::nullopt;
    }
    if (static_cast<uint8_t>(in_[0]) != kVersion) {
      fail(Errc::bad_version, 0,
           "version byte " + std::to_string(static_cast<uint8_t>(in_[0])) + ", expected 131");
      return std::nullopt;
    }
    pos_ = 1;
    Value v;
    if (!term(v, 0)) return std::nullopt;
    if (pos_ != in_.size()) {
      fail(Errc::trailing_bytes, pos_,
           std::to_string(in_.size() - pos_) + " bytes after a complete term");
      return std::nullopt;
    }
    return v;
  }

 private:
  bool fail(Errc code, size_t offset, std::string detail) {
    error_ = Error{code, offset, std::move(detail)};
    return false;
  }

  size_t remaining() const { return in_.size() - pos_; }

  // Every read goes through need(): the only bounds check, before the bytes.
  bool need(size_t n, const char* what) {
    if (n <= remaining()) return true;
    return fail(Errc::truncated, pos_,
                std::string(what) + " needs " + std::to_string(n) + " bytes, " +
                    std::to_string(remaining()) + " left");
  }
  uint8_t u8() { return static_cast<uint8_t>(in_[pos_++]); }
  uint16_t u16() {
    const uint16_t hi = u8();
    return static_cast<uint16_t>(hi << 8 | u8());
  }
  uint32_t u32() {
    const uint32_t hi = u16();
    return hi << 16 | u16();
  }
  std::string_view bytes(size_t n) {
    const std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  bool count_value(size_t at) {
    if (++values_ <= limits_.max_values) return true;
    return fail(Errc::too_many_values, at,
                "more than " + std::to_string(limits_.max_values) + " values in one term");
  }

  // A container of `elements` values that needs at least `min_bytes` more.
  bool container(size_t at, size_t depth, uint64_t elements, uint64_t min_bytes, const char* what) {
    if (depth + 1 > limits_.max_depth)
      return fail(Errc::too_deep, at,
                  "nesting deeper than " + std::to_string(limits_.max_depth) + " containers");
    if (min_bytes > remaining())
      return fail(Errc::truncated, at,
                  std::string(what) + " of " + std::to_string(elements) + " elements, only " +
                      std::to_string(remaining()) + " bytes left");
    if (elements > limits_.max_values - values_)
      return fail(Errc::too_many_values, at,
                  std::string(what) + " of " + std::to_string(elements) + " elements: more than " +
                      std::to_string(limits_.max_values) + " values in one term");
    return true;
  }

  // The atom whose tag was just read at `at`, as UTF-8.
  bool atom_text(uint8_t tag, size_t at, std::string& text) {
    const bool small = tag == kSmallAtom || tag == kSmallAtomUtf8;
    if (!need(small ? 1 : 2, tag_name(tag))) return false;
    const size_t n = small ? u8() : u16();
    if (!need(n, tag_name(tag))) return false;
    const std::string_view raw = bytes(n);
    if (tag == kAtom || tag == kSmallAtom) {
      // Latin-1: each byte is a character.
      if (n > kMaxAtomChars) return fail(Errc::bad_atom, at, "atom over 255 characters");
      text.clear();
      for (const char c : raw) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x80) {
          text += c;
        } else {
          text += static_cast<char>(0xC0 | u >> 6);
          text += static_cast<char>(0x80 | (u & 0x3F));
        }
      }
      return true;
    }
    const std::optional<size_t> chars = utf8_length(raw);
    if (!chars) return fail(Errc::bad_atom, at, "atom text is not UTF-8");
    if (*chars > kMaxAtomChars) return fail(Errc::bad_atom, at, "atom over 255 characters");
    text.assign(raw);
    return true;
  }

  bool node(std::string& text) {
    const size_t at = pos_;
    if (!need(1, "node atom")) return false;
    const uint8_t tag = u8();
    if (tag != kAtom && tag != kSmallAtom && tag != kAtomUtf8 && tag != kSmallAtomUtf8)
      return fail(Errc::unsupported_tag, at,
                  "node name must be an atom, found tag " + std::to_string(tag));
    return atom_text(tag, at, text);
  }

  bool big(uint8_t tag, size_t at, Value& out) {
    const bool small = tag == kSmallBig;
    if (!need(small ? 2 : 5, tag_name(tag))) return false;
    const uint32_t n = small ? u8() : u32();
    const bool negative = u8() != 0;
    if (!need(n, tag_name(tag))) return false;
    const std::string_view digits = bytes(n);
    // Little-endian base 256; high zero digits do not count.
    size_t significant = digits.size();
    while (significant > 0 && digits[significant - 1] == 0) --significant;
    if (significant > 8)
      return fail(Errc::integer_out_of_range, at,
                  "integer of " + std::to_string(significant) + " bytes does not fit int64");
    uint64_t magnitude = 0;
    for (size_t k = significant; k-- > 0;)
      magnitude = magnitude << 8 | static_cast<uint8_t>(digits[k]);
    constexpr uint64_t kMaxPositive = std::numeric_limits<int64_t>::max();
    if (magnitude > kMaxPositive + (negative ? 1 : 0))
      return fail(
          Errc::integer_out_of_range, at,
          std::string(negative ? "-" : "") + std::to_string(magnitude) + " does not fit int64");
    out = Value(negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude));
    return true;
  }

  bool elements(std::vector<Value>& items, size_t count, size_t depth) {
    items.resize(count);
    for (Value& item : items)
      if (!term(item, depth + 1)) return false;
    return true;
  }

  bool term(Value& out, size_t depth) {
    const size_t at = pos_;
    if (!need(1, "tag")) return false;
    if (!count_value(at)) return false;
    const uint8_t tag = u8();
    switch (tag) {
      case kSmallInteger:
        if (!need(1, "SMALL_INTEGER_EXT")) return false;
        out = Value(u8());
        return true;
      case kInteger:
        if (!need(4, "INTEGER_EXT")) return false;
        out = Value(static_cast<int32_t>(u32()));
        return true;
      case kSmallBig:
      case kLargeBig:
        return big(tag, at, out);
      case kNewFloat: {
        if (!need(8, "NEW_FLOAT_EXT")) return false;
        const uint64_t hi = u32();
        const double d = std::bit_cast<double>(hi << 32 | u32());
        if (!std::isfinite(d)) return fail(Errc::bad_float, at, "NaN or infinity");
        out = Value(d);
        return true;
      }
      case kAtom:
      case kSmallAtom:
      case kAtomUtf8:
      case kSmallAtomUtf8: {
        std::string text;
        if (!atom_text(tag, at, text)) return false;
        if (text == "undefined" || text == "nil")
          out = Value();
        else if (text == "true")
          out = Value(true);
        else if (text == "false")
          out = Value(false);
        else
          return fail(Errc::unsupported_atom, at,
                      "atom '" + printable(text) +
                          "': only undefined, nil, true and false are values (send a binary)");
        return true;
      }
      case kBinary: {
        if (!need(4, "BINARY_EXT")) return false;
        const uint32_t n = u32();
        if (!need(n, "BINARY_EXT")) return false;
        const std::string_view b = bytes(n);
        if (utf8_length(b))
          out = Value(std::string(b));
        else
          out = Value(Binary{std::string(b)});
        return true;
      }
      case kBitBinary: {
        if (!need(5, "BIT_BINARY_EXT")) return false;
        const uint32_t n = u32();
        const uint8_t bits = u8();
        if (!need(n, "BIT_BINARY_EXT")) return false;
        // As Erlang: bits is 1..8 for a non-empty binary and 0 for an empty one.
        if (n == 0 ? bits != 0 : bits != 8)
          return fail(Errc::bitstring, at,
                      std::to_string(n) + " bytes with " + std::to_string(bits) +
                          " bits in the last: only whole bytes are values");
        out = Value(Binary{std::string(bytes(n))});
        return true;
      }
      case kNil:
        out = Value(List{});
        return true;
      case kString: {
        if (!need(2, "STRING_EXT")) return false;
        const uint16_t n = u16();
        if (!container(at, depth, n, n, "STRING_EXT")) return false;
        values_ += n;
        List l;
        l.reserve(n);
        for (const char c : bytes(n)) l.emplace_back(static_cast<uint8_t>(c));
        out = Value(std::move(l));
        return true;
      }
      case kList: {
        if (!need(4, "LIST_EXT")) return false;
        const uint32_t n = u32();
        // Each element is a byte at least, and the tail one more.
        if (!container(at, depth, n, n + uint64_t{1}, "LIST_EXT")) return false;
        List l;
        if (!elements(l, n, depth)) return false;
        const size_t tail = pos_;
        if (!need(1, "list tail")) return false;
        if (u8() != kNil) return fail(Errc::improper_list, tail, "list tail is not []");
        out = Value(std::move(l));
        return true;
      }
      case kSmallTuple:
      case kLargeTuple: {
        const bool small = tag == kSmallTuple;
        if (!need(small ? 1 : 4, tag_name(tag))) return false;
        const uint32_t n = small ? u8() : u32();
        if (!container(at, depth, n, n, tag_name(tag))) return false;
        Tuple t;
        if (!elements(t, n, depth)) return false;
        out = Value(std::move(t));
        return true;
      }
      case kMap: {
        if (!need(4, "MAP_EXT")) return false;
        const uint32_t n = u32();
        if (!container(at, depth, 2 * uint64_t{n}, 2 * uint64_t{n}, "MAP_EXT")) return false;
        std::vector<Map::Entry> entries(n);
        for (auto& [key, value] : entries)
          if (!term(key, depth + 1) || !term(value, depth + 1)) return false;
        std::optional<Map> m = Map::from_entries(std::move(entries));
        if (!m) return fail(Errc::duplicate_key, at, "map with two equal keys");
        out = Value(std::move(*m));
        return true;
      }
      case kNewPid: {
        Address a;
        if (!node(a.node) || !need(12, "NEW_PID_EXT")) return false;
        a.id = u32();
        a.serial = u32();
        a.creation = u32();
        out = Value(std::move(a));
        return true;
      }
      case kNewerReference: {
        Reference r;
        if (!need(2, "NEWER_REFERENCE_EXT")) return false;
        const uint16_t n = u16();
        if (n > Reference::kMaxWords)
          return fail(Errc::bad_reference, at,
                      "reference of " + std::to_string(n) + " words (at most 5)");
        r.size = static_cast<uint8_t>(n);
        if (!node(r.node) || !need(4 + 4 * size_t{n}, "NEWER_REFERENCE_EXT")) return false;
        r.creation = u32();
        for (size_t k = 0; k < n; ++k) r.words[k] = u32();
        out = Value(std::move(r));
        return true;
      }
    }
    const char* name = tag_name(tag);
    return fail(Errc::unsupported_tag, at,
                name ? std::string(name) + " (tag " + std::to_string(tag) + ") is not a value here"
                     : "unknown tag " + std::to_string(tag));
  }

  std::string_view in_;
  size_t pos_ = 0;
  const Limits& limits_;
  Error& error_;
  size_t values_ = 0;
};

}  // namespace

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::bad_version:
      return "bad_version";
    case Errc::truncated:
      return "truncated";
    case Errc::trailing_bytes:
      return "trailing_bytes";
    case Errc::unsupported_tag:
      return "unsupported_tag";
    case Errc::unsupported_atom:
      return "unsupported_atom";
    case Errc::bad_atom:
      return "bad_atom";
    case Errc::integer_out_of_range:
      return "integer_out_of_range";
    case Errc::bad_float:
      return "bad_float";
    case Errc::bitstring:
      return "bitstring";
    case Errc::improper_list:
      return "improper_list";
    case Errc::duplicate_key:
      return "duplicate_key";
    case Errc::bad_reference:
      return "bad_reference";
    case Errc::too_deep:
      return "too_deep";
    case Errc::too_many_values:
      return "too_many_values";
    case Errc::too_large:
      return "too_large";
    case Errc::bad_utf8:
      return "bad_utf8";
  }
  return "unknown";
}

std::string Error::message() const {
  return std::string(errc_name(code)) + " at byte " + std::to_string(offset) + ": " + detail;
}

bool encode(const Value& value, std::string& out, Error& error, const Limits& limits) {
  const size_t size = out.size();
  if (Encoder(out, limits, error).run(value)) return true;
  out.resize(size);
  return false;
}

std::optional<Value> decode(std::string_view bytes, Error& error, const Limits& limits) {
  return Decoder(bytes, limits, error).run();
}

bool append_frame(std::string& out, const Value& value, Error& error, size_t max_frame,
                  const Limits& limits) {
  const size_t size = out.size();
  out.append(kFrameHeaderBytes, '\0');
  if (!encode(value, out, error, limits)) {
    out.resize(size);
    return false;
  }
  const size_t length = out.size() - size - kFrameHeaderBytes;
  if (length > max_frame || length > std::numeric_limits<uint32_t>::max()) {
    out.resize(size);
    error = Error{Errc::too_large, length,
                  "term of " + std::to_string(length) + " bytes, the frame maximum is " +
                      std::to_string(max_frame)};
    return false;
  }
  for (size_t k = 0; k < kFrameHeaderBytes; ++k)
    out[size + k] = static_cast<char>(length >> (8 * (kFrameHeaderBytes - 1 - k)));
  return true;
}

FrameSplit split_frame(std::string_view buffer, size_t max_frame) {
  FrameSplit split;
  if (buffer.size() < kFrameHeaderBytes) return split;
  uint32_t length = 0;
  for (size_t k = 0; k < kFrameHeaderBytes; ++k)
    length = length << 8 | static_cast<uint8_t>(buffer[k]);
  split.length = length;
  if (length > max_frame) {
    split.status = FrameSplit::Status::too_large;
    return split;
  }
  if (buffer.size() - kFrameHeaderBytes < length) return split;
  split.status = FrameSplit::Status::complete;
  split.term = buffer.substr(kFrameHeaderBytes, length);
  split.consumed = kFrameHeaderBytes + length;
  return split;
}

}  // namespace occasional::etf
