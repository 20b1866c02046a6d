#include "supervisor/exit_reason.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include "workers/process_control.hpp"

namespace occasional::supervisor {
namespace {

siginfo_t exited(int code) {
  siginfo_t info{};
  info.si_code = CLD_EXITED;
  info.si_status = code;
  return info;
}

siginfo_t killed(int signal, bool core = false) {
  siginfo_t info{};
  info.si_code = core ? CLD_DUMPED : CLD_KILLED;
  info.si_status = signal;
  return info;
}

const Map kNormal{{"kind", "normal"}, {"value", 42}};
const Map kError{{"kind", "error"}, {"type", "std::runtime_error"}, {"what", "x"}};

ExitEvidence stated(const Map& reason) {
  ExitEvidence e;
  e.stated = reason;
  return e;
}

TEST(ExitReason, ReportedValueConfirmedByExitZeroIsNormal) {
  EXPECT_EQ(reconcile_exit(exited(0), stated(kNormal)), kNormal);
}

TEST(ExitReason, ReportedExceptionConfirmedByExitOneIsError) {
  EXPECT_EQ(reconcile_exit(exited(1), stated(kError)), kError);
}

TEST(ExitReason, AnExitCodeWithoutReportIsExitCode) {
  EXPECT_EQ(reconcile_exit(exited(3), ExitEvidence{}), (Map{{"kind", "exit_code"}, {"code", 3}}));
  EXPECT_EQ(reconcile_exit(exited(0), ExitEvidence{}), (Map{{"kind", "exit_code"}, {"code", 0}}));
}

TEST(ExitReason, TheKernelWinsOverAContradictedReport) {
  EXPECT_EQ(reconcile_exit(exited(5), stated(kNormal)),
            (Map{{"kind", "exit_code"}, {"code", 5}, {"value", 42}}));
  EXPECT_EQ(reconcile_exit(exited(0), stated(kError)), (Map{{"kind", "exit_code"}, {"code", 0}}));
}

TEST(ExitReason, KilledAfterReportingKeepsTheValueAsDetail) {
  EXPECT_EQ(reconcile_exit(killed(SIGKILL), stated(kNormal)),
            (Map{{"kind", "signal"}, {"signal", "SIGKILL"}, {"core", false}, {"value", 42}}));
  EXPECT_EQ(reconcile_exit(killed(SIGSEGV, true), ExitEvidence{}),
            (Map{{"kind", "signal"}, {"signal", "SIGSEGV"}, {"core", true}}));
}

TEST(ExitReason, KilledForALinkIsLinked) {
  ExitEvidence e;
  e.linked_from = Address{"n", 7, 0, 1};
  e.linked_reason = kError;
  EXPECT_EQ(reconcile_exit(killed(SIGKILL), e),
            (Map{{"kind", "linked"}, {"from", Address{"n", 7, 0, 1}}, {"reason", kError}}));
  // Another signal got there first: that is the reason.
  const Map reason = reconcile_exit(killed(SIGTERM), e);
  EXPECT_EQ(process_control::reason_kind(reason), "signal");
}

TEST(ExitReason, KilledForAProtocolErrorIsProtocolError) {
  ExitEvidence e = stated(kNormal);
  e.protocol_error = "a frame it sent does not decode";
  EXPECT_EQ(reconcile_exit(killed(SIGKILL), e),
            (Map{{"kind", "protocol_error"}, {"error", "a frame it sent does not decode"}}));
  // It exited on its own before the kill: the kernel decides.
  EXPECT_EQ(reconcile_exit(exited(0), e), kNormal);
}

TEST(ExitReason, StartFailure) {
  ExitEvidence e;
  e.start_error = "execve: No such file or directory";
  EXPECT_EQ(reconcile_exit(siginfo_t{}, e),
            (Map{{"kind", "start_failed"}, {"error", "execve: No such file or directory"}}));
}

TEST(ExitReason, AbnormalIsAnythingButNormalAndExitCodeZero) {
  EXPECT_FALSE(abnormal_exit(kNormal));
  EXPECT_FALSE(abnormal_exit(Map{{"kind", "exit_code"}, {"code", 0}}));
  EXPECT_TRUE(abnormal_exit(Map{{"kind", "exit_code"}, {"code", 2}}));
  EXPECT_TRUE(abnormal_exit(kError));
  EXPECT_TRUE(abnormal_exit(Map{{"kind", "noproc"}}));
}

}  // namespace
}  // namespace occasional::supervisor
