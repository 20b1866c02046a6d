#include "supervisor/exit_record.hpp"

#include <gtest/gtest.h>

#include <csignal>

namespace occasional::supervisor {
namespace {

TEST(ExitRecordTest, DescribesEachKind) {
  ExitRecord r;
  r.kind = ExitKind::exited;
  r.code = 3;
  EXPECT_EQ(r.describe(), "exited with code 3");
  EXPECT_FALSE(r.clean());
  r.code = 0;
  EXPECT_TRUE(r.clean());
  r.kind = ExitKind::killed;
  r.signal = SIGABRT;
  r.core_dumped = true;
  EXPECT_EQ(r.describe(), "killed by SIGABRT (core dumped)");
  EXPECT_STREQ(r.kind_name(), "killed");
  EXPECT_FALSE(r.clean());
  r.kind = ExitKind::start_failed;
  r.error = ENOENT;
  r.failed_call = "execve";
  EXPECT_EQ(r.describe(), "failed to start: execve: No such file or directory");
}

TEST(ExitRecordTest, SignalNames) {
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
}

}  // namespace
}  // namespace occasional::supervisor
