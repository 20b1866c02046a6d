#include "workers/json.hpp"

#include <gtest/gtest.h>

namespace occasional::workers {
namespace {

TEST(JsonTest, EscapesQuotesBackslashesAndControlCharacters) {
  std::string s;
  append_json_string(s, std::string("a\"b\\c\n\x01z", 8));
  EXPECT_EQ(s, "\"a\\\"b\\\\c\\n\\u0001z\"");
}

TEST(JsonTest, KeepsUtf8AsIs) {
  std::string s;
  append_json_string(s, "h\xc3\xa9");
  EXPECT_EQ(s, "\"h\xc3\xa9\"");
}

}  // namespace
}  // namespace occasional::workers
