// `occasional check` on every malformed configuration under
// tests/app/bad_configs: exit 2 and exactly the expected one line
// (FILE stands for the path given).
#include <dirent.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "tests/integration/coordinator_process.hpp"

namespace occasional::testing {
namespace {

const std::string kBadConfigs = OCCASIONAL_BAD_CONFIGS_DIR;

std::vector<std::string> bad_configs() {
  std::vector<std::string> names;
  DIR* d = ::opendir(kBadConfigs.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.ends_with(".json")) names.push_back(n.substr(0, n.size() - 5));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ConfigCheckTest, EveryMalformedFileGivesItsOneLineErrorAndExit2) {
  const auto names = bad_configs();
  ASSERT_GE(names.size(), 30u);
  for (const std::string& name : names) {
    const std::string file = kBadConfigs + "/" + name + ".json";
    std::ifstream expected_file(kBadConfigs + "/" + name + ".error");
    std::string expected;
    ASSERT_TRUE(std::getline(expected_file, expected)) << name << ".error is missing";
    expected.replace(expected.find("FILE"), 4, file);
    CoordinatorProcess c({"check", file});
    EXPECT_EQ(c.wait_exit(), 2) << name;
    EXPECT_EQ(c.stderr_text(), expected + "\n") << name;
  }
}

TEST(ConfigCheckTest, TheSeedConfigurationIsValid) {
  CoordinatorProcess c(
      {"check", std::string(OCCASIONAL_SOURCE_DIR) + "/tests/fuzz/corpus/config/full.json"});
  EXPECT_EQ(c.wait_exit(), 0);
}

}  // namespace
}  // namespace occasional::testing
