// Issue 24 point 9: assertions in processes reach the test that started them.
// (The failures these tests provoke on purpose are also printed by the
// failing process itself: its copy of GoogleTest reports them as usual.)
#include "tests/process/process_testing.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <signal.h>

namespace occasional {
namespace {

using testing::kWait;
using testing::run_system_collecting;

void failing_child(Process&) {
  EXPECT_EQ(1 + 1, 3) << "marker from the child";
}
constexpr int kFailingChildLine = __LINE__ - 2;

TEST(ProcessTesting, AFailedExpectInASpawnedProcessIsForwardedWithFileAndLine) {
  testing::SystemRun run = run_system_collecting([](Process& p) {
    auto [child, ref] = p.spawn_monitor(failing_child);
    EXPECT_EQ(testing::kind(testing::wait_down(p, ref)), "normal");
  });
  ASSERT_EQ(run.failures.size(), 1u);
  const testing::ForwardedFailure& f = run.failures[0];
  EXPECT_EQ(f.file, __FILE__);
  EXPECT_EQ(f.line, kFailingChildLine);
  EXPECT_NE(f.message.find("marker from the child"), std::string::npos) << f.message;
  EXPECT_EQ(testing::kind(run.reason), "normal");
}

TEST(ProcessTesting, AFailedExpectInProcessZeroIsForwarded) {
  testing::SystemRun run =
      run_system_collecting([](Process&) { EXPECT_TRUE(false) << "marker from process zero"; });
  const int expected_line = __LINE__ - 1;
  ASSERT_EQ(run.failures.size(), 1u);
  EXPECT_EQ(run.failures[0].line, expected_line);
  EXPECT_EQ(run.failures[0].file, __FILE__);
  EXPECT_NE(run.failures[0].message.find("marker from process zero"), std::string::npos);
}

TEST(ProcessTesting, AFailureIsForwardedEvenIfTheProcessIsKilledAfterwards) {
  testing::SystemRun run = run_system_collecting([](Process& p) {
    auto [child, ref] = p.spawn_monitor([](Process&) {
      ADD_FAILURE() << "then killed";
      ::raise(SIGKILL);
    });
    EXPECT_EQ(testing::kind(testing::wait_down(p, ref)), "signal");
  });
  ASSERT_EQ(run.failures.size(), 1u);
  EXPECT_NE(run.failures[0].message.find("then killed"), std::string::npos);
}

TEST(ProcessTesting, ForwardedFailuresFailTheTestAtTheirFileAndLine) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    testing::report({testing::ForwardedFailure{"some/file.cpp", 12, "99", "the message"}});
  }
  ASSERT_EQ(results.size(), 1);
  const ::testing::TestPartResult& r = results.GetTestPartResult(0);
  EXPECT_TRUE(r.nonfatally_failed());
  EXPECT_STREQ(r.file_name(), "some/file.cpp");
  EXPECT_EQ(r.line_number(), 12);
  EXPECT_NE(std::string(r.message()).find("the message"), std::string::npos);
  EXPECT_NE(std::string(r.message()).find("pid 99"), std::string::npos);
}

TEST(ProcessTesting, RunSystemFailsTheTestWhenProcessZeroEndsAbnormally) {
  EXPECT_NONFATAL_FAILURE(
      testing::run_system([](Process&) { throw std::runtime_error("zero failed"); }),
      "zero failed");
}

TEST(ProcessTesting, WaitDownGivesTheReason) {
  testing::run_system([](Process& p) {
    Address child = p.spawn([](Process& c) -> Value {
      c.receive();
      return "done";
    });
    Reference ref = p.monitor(child);
    p.send(child, "go");
    std::optional<Map> reason = testing::wait_down(p, ref, kWait);
    EXPECT_EQ(testing::field(reason, "value"), "done");
  });
}

}  // namespace
}  // namespace occasional
