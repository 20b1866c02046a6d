// Issue 22 part 3: running executables, with real Debian programs.
#include "workers/exe.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace occasional::exe {
namespace {

using namespace std::chrono_literals;
using Kind = ExitStatus::Kind;

constexpr auto kWait = 20s;  // generous: the CI machine is slow and loaded

InteractOptions with_pty(bool pty) {
  InteractOptions o;
  o.pty = pty;
  return o;
}

TEST(ExeRun, CapturesStdoutStderrAndTheExitCode) {
  Result r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.status.kind, Kind::exited);
  EXPECT_EQ(r.status.code, 3);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.out.bytes, "out\n");
  EXPECT_EQ(r.err.bytes, "err\n");
  EXPECT_EQ(r.status.describe(), "exited 3");
}

TEST(ExeRun, KilledBySignalAndStartFailure) {
  Result r = run({"sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(r.status.kind, Kind::signaled);
  EXPECT_EQ(r.status.signal, SIGTERM);
  EXPECT_EQ(r.status.describe(), "killed by SIGTERM");

  Result missing = run({"/nonexistent/program"});
  EXPECT_EQ(missing.status.kind, Kind::start_failed);
  EXPECT_NE(missing.status.error.find("No such file"), std::string::npos) << missing.status.error;

  Options bad_dir;
  bad_dir.cwd = "/nonexistent/dir";
  EXPECT_EQ(run({"true"}, bad_dir).status.kind, Kind::start_failed);
}

TEST(ExeRun, EnvironmentWorkingDirectoryAndStdin) {
  Options o;
  o.env = {"EXE_TEST=value from options"};
  o.cwd = "/tmp";
  o.input = std::string("line one\nline two\n");
  Result r = run({"sh", "-c", "echo \"$EXE_TEST\"; pwd; wc -l"}, o);
  EXPECT_TRUE(r.ok()) << r.status.describe();
  EXPECT_EQ(r.out.bytes, "value from options\n/tmp\n2\n");

  char path[] = "/tmp/exe_test_XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "from a file\n", 12), 12);
  ::close(fd);
  Options f;
  f.input_file = path;
  EXPECT_EQ(run({"cat"}, f).out.bytes, "from a file\n");
  EXPECT_EQ(run({"cat"}).out.bytes, "");  // /dev/null by default
  ::unlink(path);
}

TEST(ExeRun, LargeInputAndOutputDoNotDeadlock) {
  Options o;
  o.input = std::string(4 << 20, 'x');  // far more than a socket buffer
  Result r = run({"cat"}, o);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out.bytes.size(), size_t{4} << 20);
}

TEST(ExeRun, OutputPastTheLimitIsDroppedAndCounted) {
  Options o;
  o.max_output = 1000;
  Result r = run({"head", "-c", "100000", "/dev/zero"}, o);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out.bytes.size(), 1000u);
  EXPECT_EQ(r.out.dropped, 99000u);
  EXPECT_TRUE(r.out.truncated());
}

TEST(ExeRun, TimeoutKillsTheWholeProcessGroup) {
  Options o;
  o.timeout = 300ms;
  // The grandchild (sleep) holds stdout: it must die too for EOF to come.
  const auto start = std::chrono::steady_clock::now();
  Result r = run({"sh", "-c", "sleep 60 & echo started; wait"}, o);
  EXPECT_EQ(r.status.kind, Kind::signaled);
  EXPECT_EQ(r.status.signal, SIGKILL);
  EXPECT_TRUE(r.status.timed_out);
  EXPECT_EQ(r.out.bytes, "started\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWait);
}

TEST(ExePipeline, EachStageHasItsStatusAndPipefailTakesTheLastFailure) {
  Options o;
  o.input = std::string("b x\na x\nc\nb x\n");
  PipelineResult p = pipeline({{"grep", "x"}, {"sort"}, {"uniq", "-c"}}, o);
  ASSERT_EQ(p.stages.size(), 3u);
  for (const auto& s : p.stages) EXPECT_TRUE(s.ok()) << s.describe();
  EXPECT_TRUE(p.ok());
  EXPECT_EQ(p.out.bytes, "      1 a x\n      2 b x\n");

  // grep finds nothing (1), the rest succeed: pipefail reports grep's 1.
  PipelineResult none = pipeline({{"grep", "nothing"}, {"sort"}, {"wc", "-l"}}, o);
  EXPECT_EQ(none.stages[0].code, 1);
  EXPECT_TRUE(none.stages[2].ok());
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(&none.status(), &none.stages[0]);
  EXPECT_EQ(none.out.bytes, "0\n");

  // A stage that cannot start: its neighbours see EOF and go on.
  PipelineResult broken = pipeline({{"echo", "hi"}, {"/nonexistent/x"}, {"cat"}});
  EXPECT_EQ(broken.stages[1].kind, Kind::start_failed);
  EXPECT_TRUE(broken.stages[2].ok());
  EXPECT_EQ(&broken.status(), &broken.stages[1]);
}

TEST(ExeInteract, PythonOnAPseudoTerminal) {
  Interaction py = interact({"python3", "-i", "-q"}, with_pty(true));
  ASSERT_TRUE(py.expect(">>> ", kWait)) << py.pending();
  ASSERT_TRUE(py.send("import sys; print(sys.stdin.isatty(), 6 * 7)"));
  auto m = py.expect(R"((True|False) (\d+))", kWait);
  ASSERT_TRUE(m) << py.pending();
  EXPECT_EQ(m->groups[0], "True");  // it is on a terminal
  EXPECT_EQ(m->groups[1], "42");
  ASSERT_TRUE(py.expect(">>> ", kWait));
  py.send("raise SystemExit(5)");
  ExitStatus s = py.wait(kWait);
  EXPECT_EQ(s.kind, Kind::exited);
  EXPECT_EQ(s.code, 5);
}

TEST(ExeInteract, BcOnPipesAndOnAPty) {
  for (bool pty : {false, true}) {
    Interaction bc = interact({"bc", "-q"}, with_pty(pty));
    bc.send("2^20 + 1");
    ASSERT_TRUE(bc.expect("1048577", kWait)) << "pty " << pty << ": " << bc.pending();
    bc.send("scale=3; 1/4");
    ASSERT_TRUE(bc.expect(R"(\.250)", kWait));
    // bc exits at EOF. On a terminal it reads with readline, which sets the
    // terminal's modes between lines: a ^D sent then can be lost, so there
    // it is asked to quit (docs/exe.md, close_input).
    if (pty)
      bc.send("quit");
    else
      bc.close_input();
    ExitStatus s = bc.wait(kWait);
    EXPECT_TRUE(s.ok()) << "pty " << pty << ": " << s.describe();
  }
}

// On a terminal in canonical mode (cat leaves it so), close_input's ^D is
// an end of file.
TEST(ExeInteract, CloseInputOnAPtyIsEndOfFile) {
  Interaction cat = interact({"cat"}, with_pty(true));
  cat.send("hello");
  ASSERT_TRUE(cat.expect("hello", kWait)) << cat.pending();
  cat.close_input();
  ExitStatus s = cat.wait(kWait);
  EXPECT_TRUE(s.ok()) << s.describe();
}

TEST(ExeInteract, ShellExpectTimeoutAndEof) {
  Interaction sh = interact({"sh"});
  EXPECT_FALSE(sh.expect("never printed", 100ms));
  EXPECT_FALSE(sh.eof());
  sh.send("echo one; echo two >&2");
  auto m = sh.expect("two", kWait);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->before, "one\n");  // stdout and stderr together
  sh.send("exit 4");
  EXPECT_FALSE(sh.expect("after exit", kWait));
  EXPECT_TRUE(sh.eof());
  EXPECT_EQ(sh.wait(kWait).code, 4);
}

TEST(ExeInteract, WaitTimeoutAndDestructionKillTheGroup) {
  Interaction sh = interact({"sh", "-c", "sleep 60"});
  ExitStatus s = sh.wait(200ms);
  EXPECT_TRUE(s.timed_out);
  EXPECT_EQ(s.signal, SIGKILL);
  { Interaction dropped = interact({"sleep", "60"}); }  // reaped by its destructor
  siginfo_t info{};
  EXPECT_NE(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), 0);  // no child left
  EXPECT_EQ(errno, ECHILD);
}

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

TEST(ExeResources, ThousandRunsLeakNoFdAndNoZombie) {
  const int before = open_fds();
  Options timed;
  timed.timeout = 1ms;
  for (int i = 0; i < 1000; ++i) {
    if (i % 100 == 1) {
      run({"sleep", "10"}, timed);
      pipeline({{"echo", "x"}, {"cat"}});
      Interaction sh = interact({"sh"}, with_pty(i % 200 == 1));
      sh.send("exit 0");
      sh.wait(kWait);
    } else {
      ASSERT_TRUE(run({"/bin/true"}).ok());
    }
  }
  EXPECT_EQ(open_fds(), before);
  siginfo_t info{};
  EXPECT_NE(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT), 0);
  EXPECT_EQ(errno, ECHILD) << "a child is left";
}

}  // namespace
}  // namespace occasional::exe
