#include "workers/etf.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

namespace occasional {
// gtest prints values as Erlang would.
inline void PrintTo(const Value& v, std::ostream* os) {
  *os << v.to_string();
}

namespace etf {
namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (const int b : list) s.push_back(static_cast<char>(b));
  return s;
}

std::string encoded(const Value& v, const Limits& limits = {}) {
  std::string out;
  Error error;
  EXPECT_TRUE(encode(v, out, error, limits)) << v.to_string() << ": " << error.message();
  return out;
}

std::optional<Value> decoded(std::string_view in, const Limits& limits = {}) {
  Error error;
  std::optional<Value> v = decode(in, error, limits);
  EXPECT_TRUE(v) << error.message();
  return v;
}

Error decode_error(std::string_view in, const Limits& limits = {}) {
  Error error;
  const std::optional<Value> v = decode(in, error, limits);
  EXPECT_FALSE(v) << "decoded " << v->to_string();
  return error;
}

// A value with every kind in it, at several depths.
Value everything() {
  return tuple(Value(), true, false, 0, 255, 256, -1, INT32_MAX, int64_t{INT32_MAX} + 1, INT32_MIN,
               int64_t{INT32_MIN} - 1, INT64_MAX, INT64_MIN, 1.5, -0.0, "", "héllo", binary(""),
               binary(std::string("\0\xff", 2)), list(), list(1, list(2, tuple())),
               Value(Map{{"k", list(Map{})}, {1, binary("v")}}),
               Address{"occasional@localhost", 42, 3, 7},
               Reference{"occasional@localhost", 7, 3, {1, 2, 3}});
}

struct Vector {
  Value value;
  std::string bytes;
};

// Both ways, byte for byte. The integer, float, binary, tuple and map bytes
// are what term_to_binary/1 gives in Erlang/OTP 25 (erlang-base).
TEST(Etf, ExactVectorsBothWays) {
  const std::vector<Vector> vectors = {
      {0, bytes({131, 97, 0})},
      {255, bytes({131, 97, 255})},
      {256, bytes({131, 98, 0, 0, 1, 0})},
      {-1, bytes({131, 98, 255, 255, 255, 255})},
      {INT32_MAX, bytes({131, 98, 127, 255, 255, 255})},
      {int64_t{INT32_MAX} + 1, bytes({131, 110, 4, 0, 0, 0, 0, 128})},
      {INT32_MIN, bytes({131, 98, 128, 0, 0, 0})},
      {int64_t{INT32_MIN} - 1, bytes({131, 110, 4, 1, 1, 0, 0, 128})},
      {INT64_MAX, bytes({131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127})},
      {INT64_MIN, bytes({131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128})},
      {1.5, bytes({131, 70, 63, 248, 0, 0, 0, 0, 0, 0})},
      {-0.0, bytes({131, 70, 128, 0, 0, 0, 0, 0, 0, 0})},
      {1.0e20, bytes({131, 70, 68, 21, 175, 29, 120, 181, 140, 64})},
      {"", bytes({131, 109, 0, 0, 0, 0})},
      {"hé", bytes({131, 109, 0, 0, 0, 3, 104, 195, 169})},
      {tuple(), bytes({131, 104, 0})},
      {tuple(1, "a"), bytes({131, 104, 2, 97, 1, 109, 0, 0, 0, 1, 97})},
      {Map{}, bytes({131, 116, 0, 0, 0, 0})},
      {Map{{1, 2}}, bytes({131, 116, 0, 0, 0, 1, 97, 1, 97, 2})},
      {list(), bytes({131, 106})},
      {list(1000), bytes({131, 108, 0, 0, 0, 1, 98, 0, 0, 3, 232, 106})},
      // Ours (OTP 25 still writes ATOM_EXT; OTP 26 writes these).
      {Value(), bytes({131, 119, 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd'})},
      {true, bytes({131, 119, 4, 't', 'r', 'u', 'e'})},
      {false, bytes({131, 119, 5, 'f', 'a', 'l', 's', 'e'})},
      // Binaries as BIT_BINARY_EXT, whole last byte (docs/messages.md).
      {binary("A"), bytes({131, 77, 0, 0, 0, 1, 8, 65})},
      {binary(""), bytes({131, 77, 0, 0, 0, 0, 0})},
      {Address{"a@b", 1, 2, 3},
       bytes({131, 88, 119, 3, 'a', '@', 'b', 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3})},
      {Reference{"a@b", 3, 2, {1, 2}},
       bytes({131, 90, 0, 2, 119, 3, 'a', '@', 'b', 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2})},
      {Reference{"a@b", 3, 0, {}}, bytes({131, 90, 0, 0, 119, 3, 'a', '@', 'b', 0, 0, 0, 3})},
  };
  for (const Vector& v : vectors) {
    SCOPED_TRACE(v.value.to_string());
    EXPECT_EQ(encoded(v.value), v.bytes);
    EXPECT_EQ(decoded(v.bytes), v.value);
  }
}

std::string erl_node(std::initializer_list<int> tail) {
  std::string s = bytes({100, 0, 13}) + "nonode@nohost";
  return s + bytes(tail);
}

// What Erlang writes that occasional never does, decoded to what it means.
TEST(Etf, ErlangFormsDecode) {
  const std::vector<Vector> vectors = {
      // term_to_binary([1,2,3]): a short list of small integers is a STRING_EXT.
      {list(1, 2, 3), bytes({131, 107, 0, 3, 1, 2, 3})},
      {list(), bytes({131, 107, 0, 0})},
      {true, bytes({131, 100, 0, 4, 't', 'r', 'u', 'e'})},
      {false, bytes({131, 115, 5, 'f', 'a', 'l', 's', 'e'})},
      {true, bytes({131, 118, 0, 4, 't', 'r', 'u', 'e'})},
      {Value(), bytes({131, 100, 0, 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd'})},
      {Value(), bytes({131, 100, 0, 3, 'n', 'i', 'l'})},  // Elixir's nil
      // A BINARY_EXT that is not UTF-8 is a binary.
      {binary("\xff"), bytes({131, 109, 0, 0, 0, 1, 255})},
      // BIT_BINARY_EXT of a valid UTF-8 text stays a binary.
      {binary("ok"), bytes({131, 77, 0, 0, 0, 2, 8, 'o', 'k'})},
      // Big integers that fit, also with high zero digits, LARGE_BIG and -0.
      {1, bytes({131, 110, 3, 0, 1, 0, 0})},
      {0, bytes({131, 110, 2, 1, 0, 0})},
      {-258, bytes({131, 111, 0, 0, 0, 2, 1, 2, 1})},
      {INT64_MIN, bytes({131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 128, 0})},
      // LARGE_TUPLE, even when small.
      {tuple(1), bytes({131, 105, 0, 0, 0, 1, 97, 1})},
      // LIST_EXT of length 0 with a [] tail is [].
      {list(), bytes({131, 108, 0, 0, 0, 0, 106})},
      // self() and make_ref() in a non-distributed erl (OTP 25).
      {Address{"nonode@nohost", 9, 0, 0},
       bytes({131, 88}) + erl_node({0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0})},
      {Reference{"nonode@nohost", 0, 3, {0x0000FA06, 0x3BD80001, 0xD40AB051}},
       bytes({131, 90, 0, 3}) +
           erl_node({0, 0, 0, 0, 0, 0, 250, 6, 59, 216, 0, 1, 212, 10, 176, 81})},
      // Latin-1 node names become UTF-8.
      {Address{"\xc3\xa9@h", 1, 0, 0},
       bytes({131, 88, 115, 3, 0xe9, '@', 'h', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})},
  };
  for (const Vector& v : vectors) {
    SCOPED_TRACE(v.value.to_string());
    EXPECT_EQ(decoded(v.bytes), v.value);
  }
  // The 256-tuple, from erl: LARGE_TUPLE_EXT and then 1, 2, ...
  Tuple big;
  for (int i = 1; i <= 256; ++i) big.push_back(i);
  const std::string b = encoded(Value(big));
  EXPECT_EQ(b.substr(0, 8), bytes({131, 105, 0, 0, 1, 0, 97, 1}));
  EXPECT_EQ(decoded(b), Value(big));
}

struct Bad {
  std::string bytes;
  Errc code;
  size_t offset;
};

TEST(Etf, ErrorsSayWhatAndWhere) {
  const std::vector<Bad> bad = {
      {"", Errc::truncated, 0},
      {bytes({131}), Errc::truncated, 1},
      {bytes({130, 97, 0}), Errc::bad_version, 0},
      {bytes({131, 97, 1, 0}), Errc::trailing_bytes, 3},
      // 2^63 and 2^64 (erl's bytes), and -(2^63)-1.
      {bytes({131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128}), Errc::integer_out_of_range, 1},
      {bytes({131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), Errc::integer_out_of_range, 1},
      {bytes({131, 110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128}), Errc::integer_out_of_range, 1},
      {bytes({131, 111, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), Errc::integer_out_of_range, 1},
      {bytes({131, 104, 2, 97, 1, 100, 0, 2, 'o', 'k'}), Errc::unsupported_atom, 5},
      {bytes({131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3}), Errc::duplicate_key, 1},
      {bytes({131, 70, 127, 240, 0, 0, 0, 0, 0, 0}), Errc::bad_float, 1},
      {bytes({131, 70, 127, 248, 0, 0, 0, 0, 0, 1}), Errc::bad_float, 1},
      {bytes({131, 77, 0, 0, 0, 1, 3, 64}), Errc::bitstring, 1},
      {bytes({131, 77, 0, 0, 0, 0, 8}), Errc::bitstring, 1},
      {bytes({131, 77, 0, 0, 0, 1, 0, 1}), Errc::bitstring, 1},
      // [1|2]
      {bytes({131, 108, 0, 0, 0, 1, 97, 1, 97, 2}), Errc::improper_list, 8},
      {bytes({131, 90, 0, 6, 119, 1, 'a'}), Errc::bad_reference, 1},
      {bytes({131, 112, 0, 0, 0, 0}), Errc::unsupported_tag, 1},    // a fun
      {bytes({131, 80, 0, 0, 0, 1, 0}), Errc::unsupported_tag, 1},  // compressed
      {bytes({131, 103, 0}), Errc::unsupported_tag, 1},             // old PID_EXT
      {bytes({131, 1}), Errc::unsupported_tag, 1},
      {bytes({131, 118, 0, 1, 255}), Errc::bad_atom, 1},
      {bytes({131, 88, 97, 1}), Errc::unsupported_tag, 2},  // node not an atom
      // Lengths that claim more than there is fail before any allocation.
      {bytes({131, 108, 255, 255, 255, 255, 106}), Errc::truncated, 1},
      {bytes({131, 105, 255, 255, 255, 255}), Errc::truncated, 1},
      {bytes({131, 116, 128, 0, 0, 0, 97, 1}), Errc::truncated, 1},
      {bytes({131, 109, 255, 255, 255, 255, 0}), Errc::truncated, 6},
      {bytes({131, 107, 0, 5, 1}), Errc::truncated, 1},
      {bytes({131, 110, 255, 0, 1}), Errc::truncated, 4},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(testing::PrintToString(b.bytes));
    const Error e = decode_error(b.bytes);
    EXPECT_EQ(errc_name(e.code), std::string(errc_name(b.code))) << e.message();
    EXPECT_EQ(e.offset, b.offset) << e.message();
    EXPECT_FALSE(e.detail.empty());
  }
  const Error e = decode_error(bytes({131, 98, 0, 1}));
  EXPECT_EQ(e.message(), "truncated at byte 2: INTEGER_EXT needs 4 bytes, 2 left");
}

TEST(Etf, AtomsOverTwoHundredFiftyFiveCharactersAreRefused) {
  std::string latin = bytes({131, 100, 1, 0});
  latin += std::string(256, 'a');
  EXPECT_EQ(decode_error(latin).code, Errc::bad_atom);
  // 255 characters of two bytes each: a long ATOM_UTF8_EXT node name is fine.
  std::string node;
  for (int i = 0; i < 255; ++i) node += "é";
  const Value a(Address{node, 1, 2, 3});
  const std::string b = encoded(a);
  EXPECT_EQ(static_cast<uint8_t>(b[2]), 118);  // ATOM_UTF8_EXT
  EXPECT_EQ(decoded(b), a);
  Error error;
  std::string out;
  EXPECT_FALSE(encode(Address{node + "x", 1, 2, 3}, out, error));
  EXPECT_EQ(error.code, Errc::bad_atom);
}

TEST(Etf, RoundTripKeepsEveryKindApart) {
  const Value v = everything();
  EXPECT_EQ(decoded(encoded(v)), v);
  // A binary whose bytes are text stays a binary; a string stays a string.
  EXPECT_EQ(decoded(encoded(binary("text"))), binary("text"));
  EXPECT_EQ(decoded(encoded(Value("text"))), Value("text"));
}

TEST(Etf, EveryTruncationIsAnErrorAtOrBeforeTheCut) {
  const std::string whole = encoded(everything());
  for (size_t n = 0; n < whole.size(); ++n) {
    Error error;
    const std::optional<Value> v = decode(std::string_view(whole).substr(0, n), error);
    ASSERT_FALSE(v) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(error.code, Errc::truncated) << n << ": " << error.message();
    EXPECT_LE(error.offset, n) << error.message();
  }
}

TEST(Etf, TrailingGarbageIsAnError) {
  const std::string whole = encoded(everything());
  for (const char extra : {'\0', '\x83', 'j'}) {
    const Error e = decode_error(whole + extra);
    EXPECT_EQ(e.code, Errc::trailing_bytes);
    EXPECT_EQ(e.offset, whole.size());
  }
}

Value nested_lists(size_t depth) {
  Value v = list();
  for (size_t i = 0; i < depth; ++i) v = list(std::move(v));
  return v;
}

TEST(Etf, NestingIsBoundedTheSameWayBothWays) {
  for (const size_t max : {size_t{4}, Limits{}.max_depth}) {
    SCOPED_TRACE(max);
    const Limits limits{.max_depth = max};
    // `max` non-empty lists around an empty one: at the limit.
    const Value at = nested_lists(max);
    const std::string b = encoded(at, limits);
    EXPECT_EQ(decoded(b, limits), at);

    const Value past = nested_lists(max + 1);
    std::string out = "keep";
    Error error;
    EXPECT_FALSE(encode(past, out, error, limits));
    EXPECT_EQ(error.code, Errc::too_deep);
    EXPECT_EQ(out, "keep");
    // The same bytes a more generous encoder makes are refused on decode.
    const std::string deep = encoded(past, Limits{.max_depth = max + 1});
    const Error e = decode_error(deep, limits);
    EXPECT_EQ(e.code, Errc::too_deep);
    EXPECT_EQ(e.offset, 1 + 5 * max);  // at the first list past the limit
  }
  // Tuples and maps count the same; a million nested tuples is refused at
  // once, without recursing a million times.
  std::string deep(1, '\x83');
  for (int i = 0; i < 1000000; ++i) deep += bytes({104, 1});
  deep += bytes({106});
  EXPECT_EQ(decode_error(deep).code, Errc::too_deep);
  EXPECT_EQ(
      decode_error(bytes({131, 116, 0, 0, 0, 1, 106, 116, 0, 0, 0, 0}), Limits{.max_depth = 1})
          .code,
      Errc::too_deep);
}

TEST(Etf, ValueCountIsBounded) {
  const Limits limits{.max_values = 4};
  // The list itself and its three elements: four values.
  EXPECT_EQ(decoded(encoded(list(1, 2, 3)), limits), list(1, 2, 3));
  EXPECT_EQ(decoded(bytes({131, 107, 0, 3, 1, 2, 3}), limits), list(1, 2, 3));
  EXPECT_EQ(decode_error(encoded(list(1, 2, 3, 4)), limits).code, Errc::too_many_values);
  EXPECT_EQ(decode_error(bytes({131, 107, 0, 4, 1, 2, 3, 4}), limits).code, Errc::too_many_values);
  EXPECT_EQ(decode_error(encoded(tuple(1, list(2, 3))), limits).code, Errc::too_many_values);
  std::string out;
  Error error;
  EXPECT_FALSE(encode(list(1, 2, 3, 4), out, error, limits));
  EXPECT_EQ(error.code, Errc::too_many_values);
  EXPECT_TRUE(out.empty());
}

TEST(Etf, EncoderRefusesWhatTheDecoderWouldAndLeavesOutAlone) {
  const std::vector<std::pair<Value, Errc>> refused = {
      {Value("\xff"), Errc::bad_utf8},
      {Value("\xed\xa0\x80"), Errc::bad_utf8},  // a surrogate
      {Value("\xc0\x80"), Errc::bad_utf8},      // overlong
      {Value(std::numeric_limits<double>::quiet_NaN()), Errc::bad_float},
      {Value(std::numeric_limits<double>::infinity()), Errc::bad_float},
      {Value(Reference{"a@b", 0, 6, {}}), Errc::bad_reference},
      {Value(Address{"\xff", 0, 0, 0}), Errc::bad_utf8},
      {tuple(1, list("ok", "\xff")), Errc::bad_utf8},
  };
  for (const auto& [value, code] : refused) {
    std::string out = "prefix";
    Error error;
    EXPECT_FALSE(encode(value, out, error)) << value.to_string();
    EXPECT_EQ(error.code, code) << error.message();
    EXPECT_EQ(out, "prefix");
  }
  // Encoding appends.
  std::string out = "x";
  Error error;
  ASSERT_TRUE(encode(1, out, error));
  EXPECT_EQ(out, "x" + bytes({131, 97, 1}));
}

// The UTF-8 check reads ASCII eight bytes at a time: a bad byte at, before
// and after each word boundary is still found, and a valid one kept.
TEST(Etf, Utf8IsCheckedAtEveryPosition) {
  for (size_t ascii = 0; ascii <= 17; ++ascii) {
    for (const std::string tail : {"\xff", "\xc3", "\xe2\x9c", "\xed\xa0\x80", "\xc3\xa9"}) {
      for (const std::string after : {"", "abcdefghij"}) {
        const std::string text = std::string(ascii, 'a') + tail + after;
        const bool valid = tail == "\xc3\xa9";
        SCOPED_TRACE(testing::PrintToString(text));
        std::string b = bytes({131, 109, 0, 0, 0, static_cast<int>(text.size())}) + text;
        EXPECT_EQ(decoded(b), valid ? Value(text) : binary(text));
        std::string out;
        Error error;
        EXPECT_EQ(encode(Value(text), out, error), valid);
      }
    }
  }
}

TEST(Etf, FramesSplitBackAndForth) {
  std::string stream;
  Error error;
  ASSERT_TRUE(append_frame(stream, "one", error));
  ASSERT_TRUE(append_frame(stream, tuple(2, 3), error));
  EXPECT_EQ(stream.substr(0, 4), bytes({0, 0, 0, 9}));  // 131 109 0 0 0 3 o n e

  std::string_view rest = stream;
  std::vector<Value> got;
  while (!rest.empty()) {
    const FrameSplit f = split_frame(rest);
    ASSERT_EQ(f.status, FrameSplit::Status::complete);
    got.push_back(*decoded(f.term));
    rest.remove_prefix(f.consumed);
  }
  EXPECT_EQ(got, (std::vector<Value>{"one", tuple(2, 3)}));

  // Every strict prefix of a frame is incomplete.
  const std::string_view first = std::string_view(stream).substr(0, 13);
  for (size_t n = 0; n < first.size(); ++n)
    EXPECT_EQ(split_frame(first.substr(0, n)).status, FrameSplit::Status::incomplete) << n;
  // A zero-length frame is a frame; its empty term does not decode.
  const FrameSplit empty = split_frame(bytes({0, 0, 0, 0}));
  ASSERT_EQ(empty.status, FrameSplit::Status::complete);
  EXPECT_EQ(empty.consumed, 4u);
  EXPECT_EQ(decode_error(empty.term).code, Errc::truncated);
}

TEST(Etf, FrameMaximumHoldsBothWays) {
  const Value v = binary(std::string(100, 'x'));  // 1 + 1 + 4 + 1 + 100 bytes
  constexpr size_t kTerm = 107;
  std::string out = "k";
  Error error;
  ASSERT_TRUE(append_frame(out, v, error, kTerm));
  EXPECT_EQ(split_frame(std::string_view(out).substr(1), kTerm).status,
            FrameSplit::Status::complete);
  const FrameSplit over = split_frame(std::string_view(out).substr(1), kTerm - 1);
  EXPECT_EQ(over.status, FrameSplit::Status::too_large);
  EXPECT_EQ(over.length, kTerm);
  // The header alone is enough to refuse: the bytes need not arrive.
  EXPECT_EQ(split_frame(bytes({0xff, 0xff, 0xff, 0xff})).status, FrameSplit::Status::too_large);
  EXPECT_EQ(split_frame(bytes({1, 0, 0, 0})).status, FrameSplit::Status::incomplete);
  EXPECT_EQ(split_frame(bytes({1, 0, 0, 1})).status, FrameSplit::Status::too_large);

  out = "k";
  EXPECT_FALSE(append_frame(out, v, error, kTerm - 1));
  EXPECT_EQ(error.code, Errc::too_large);
  EXPECT_EQ(out, "k");
  EXPECT_FALSE(append_frame(out, Value("\xff"), error));
  EXPECT_EQ(error.code, Errc::bad_utf8);
  EXPECT_EQ(out, "k");
}

}  // namespace
}  // namespace etf
}  // namespace occasional
