// Issue 24 points 1 and 2: spawn, and the exit reason whatever happens.
#include "workers/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "tests/process/process_testing.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::field;
using testing::kind;
using testing::run_system;
using testing::spawn_and_wait;

struct NotAStdException {
  int code;
};

pid_t receive_pid(Process& p) {
  std::optional<Value> v = p.receive(
      [](const Value& m) {
        const Tuple* t = m.as_tuple();
        return t && t->size() == 2 && (*t)[0] == Value("pid");
      },
      testing::kWait);
  EXPECT_TRUE(v);
  return v ? static_cast<pid_t>(*(*v->as_tuple())[1].as_int()) : -1;
}

TEST(Spawn, RunsALambdaWithCapturesAndArguments) {
  run_system([](Process& p) {
    const std::string captured = "captured";
    auto [child, ref] = p.spawn_monitor(
        [captured](Process& c, int a, std::string b) -> Value {
          return tuple(captured, a, b, c.self());
        },
        7, std::string("arg"));
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "normal");
    EXPECT_EQ(*reason->find("value"), tuple("captured", 7, "arg", child));
  });
}

Value plain_function(Process&) {
  return 42;
}

TEST(Spawn, AFunctionReturningAValueExitsNormalWithIt) {
  run_system([](Process& p) {
    std::optional<Map> reason = spawn_and_wait(p, plain_function);
    EXPECT_EQ(kind(reason), "normal");
    EXPECT_EQ(field(reason, "value"), "42");
  });
}

TEST(Spawn, VoidFunctionExitsNormalWithNull) {
  run_system([](Process& p) {
    std::optional<Map> reason = spawn_and_wait(p, [](Process&) {});
    EXPECT_EQ(kind(reason), "normal");
    EXPECT_EQ(*reason->find("value"), Value());
  });
}

TEST(Spawn, UncaughtExceptionIsAnErrorWithTypeAndWhat) {
  run_system([](Process& p) {
    std::optional<Map> reason =
        spawn_and_wait(p, [](Process&) -> Value { throw std::runtime_error("it broke"); });
    EXPECT_EQ(kind(reason), "error");
    EXPECT_EQ(field(reason, "type"), "std::runtime_error");
    EXPECT_EQ(field(reason, "what"), "it broke");
  });
}

TEST(Spawn, ExceptionNotFromStdExceptionKeepsItsType) {
  run_system([](Process& p) {
    std::optional<Map> reason =
        spawn_and_wait(p, [](Process&) -> Value { throw NotAStdException{3}; });
    EXPECT_EQ(kind(reason), "error");
    EXPECT_EQ(field(reason, "type"), "occasional::(anonymous namespace)::NotAStdException");
    EXPECT_EQ(field(reason, "what"), "");
  });
}

TEST(Spawn, ExitIsAnExitCode) {
  run_system([](Process& p) {
    std::optional<Map> reason = spawn_and_wait(p, [](Process&) -> Value { std::exit(3); });
    EXPECT_EQ(kind(reason), "exit_code");
    EXPECT_EQ(field(reason, "code"), "3");
  });
}

TEST(Spawn, UnderscoreExitIsAnExitCode) {
  run_system([](Process& p) {
    std::optional<Map> reason = spawn_and_wait(p, [](Process&) -> Value { _exit(4); });
    EXPECT_EQ(kind(reason), "exit_code");
    EXPECT_EQ(field(reason, "code"), "4");
  });
}

TEST(Spawn, SigkillFromOutsideIsTheSignal) {
  run_system([](Process& p) {
    const Address self = p.self();
    Address child = p.spawn([self](Process& c) -> Value {
      c.send(self, tuple("pid", static_cast<int64_t>(::getpid())));
      for (;;) c.receive();
    });
    auto ref = p.monitor(child);
    pid_t pid = receive_pid(p);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGKILL");
    EXPECT_EQ(field(reason, "core"), "false");
    EXPECT_EQ(field(reason, "value"), "(none)");
  });
}

TEST(Spawn, SegfaultIsTheSignal) {
  run_system([](Process& p) {
    std::optional<Map> reason = spawn_and_wait(p, [](Process&) -> Value {
      rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);  // no core file: the flag is then known
      // A real fault the kernel delivers, not one a sanitizer reports
      // first: its SIGSEGV handler off, a store to a page with no access
      // (UBSan would catch a null pointer before the kernel does).
      ::signal(SIGSEGV, SIG_DFL);
      void* page = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      *static_cast<volatile int*>(page) = 1;
      return 0;
    });
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGSEGV");
    EXPECT_EQ(field(reason, "core"), "false");
  });
}

// The child reports its value, then blocks before exiting: its last stdio
// flush goes to a FIFO nobody drains. Bytes appearing in the FIFO say the
// report is sent; SIGKILL then.
TEST(Spawn, ReportedThenKilledIsKilledWithTheValueAsDetail) {
  const std::string fifo = ::testing::TempDir() + "occasional-fifo-" + std::to_string(::getpid());
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  run_system([&fifo](Process& p) {
    int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(reader, 0);
    const Address self = p.self();
    Address child = p.spawn([self, fifo](Process& c) -> Value {
      int out = ::open(fifo.c_str(), O_WRONLY);
      if (out < 0 || ::dup2(out, 1) < 0) return "no fifo";
      ::fcntl(1, F_SETPIPE_SZ, 4096);
      static char buffer[65536];
      std::setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
      for (int i = 0; i < 60000; ++i) std::putchar('x');  // stays in the buffer
      c.send(self, tuple("pid", static_cast<int64_t>(::getpid())));
      return "the result";
    });
    auto ref = p.monitor(child);
    pid_t pid = receive_pid(p);
    pollfd pfd{reader, POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 20'000), 1) << "the child never flushed";
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGKILL");
    EXPECT_EQ(field(reason, "value"), "the result");
    ::close(reader);
  });
  ::unlink(fifo.c_str());
}

TEST(Spawn, RefusedWhenTheCallerHasOtherThreads) {
  run_system([](Process& p) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::thread other([&] {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return done; });
    });
    try {
      p.spawn([](Process&) {});
      ADD_FAILURE() << "spawn with two threads did not throw";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("2 threads"), std::string::npos) << e.what();
    }
    {
      std::lock_guard lock(m);
      done = true;
    }
    cv.notify_all();
    other.join();
    // Single-threaded again: spawning works.
    EXPECT_EQ(kind(spawn_and_wait(p, [](Process&) {})), "normal");
  });
}

TEST(Spawn, SpawnedProcessesSpawnToo) {
  run_system([](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) {
      std::optional<Map> reason =
          testing::spawn_and_wait(c, [self](Process& g) { g.send(self, "from the grandchild"); });
      c.send(self, Value(*reason));
    });
    testing::expect_message(p, "from the grandchild");
    std::optional<Value> reason = p.receive(testing::kWait);
    ASSERT_TRUE(reason);
    EXPECT_EQ(kind(*reason->as_map()), "normal");
  });
}

TEST(Spawn, RunReturnsProcessZeroResult) {
  EXPECT_EQ(run([](Process&) -> Value { return 7; }), 7);
  EXPECT_EQ(run([](Process&) -> Value { return "text"; }), 0);
  EXPECT_EQ(run([](Process&) -> Value { throw std::runtime_error("x"); }), 1);
  EXPECT_EQ(run([](Process&) -> Value {
              ::raise(SIGTERM);
              return 0;
            }),
            128 + SIGTERM);
}

TEST(Spawn, RunKillsTheOtherProcessesWhenProcessZeroEnds) {
  pid_t left = -1;
  const std::string file = ::testing::TempDir() + "occasional-left-" + std::to_string(::getpid());
  run_system([&file](Process& p) {
    const Address self = p.self();
    p.spawn([self](Process& c) {
      c.send(self, tuple("pid", static_cast<int64_t>(::getpid())));
      for (;;) c.receive();
    });
    pid_t pid = receive_pid(p);
    FILE* f = std::fopen(file.c_str(), "w");
    std::fprintf(f, "%d", pid);
    std::fclose(f);
  });
  FILE* f = std::fopen(file.c_str(), "r");
  ASSERT_TRUE(f);
  ASSERT_EQ(std::fscanf(f, "%d", &left), 1);
  std::fclose(f);
  ::unlink(file.c_str());
  // Reaped by run() (we are its coordinator): no such process any more.
  EXPECT_EQ(::kill(left, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

}  // namespace
}  // namespace occasional

namespace occasional {
namespace {

TEST(SpawnExecutable, AnExecutableIsAProcessWithAnInbox) {
  testing::run_system([](Process& p) {
    auto [port, ref] = p.spawn_executable_monitor({OCCASIONAL_PROCESS_PORT});
    p.send(port, tuple("echo", p.self(), list(1, "two")));
    std::optional<Value> back = p.receive(testing::kWait);
    EXPECT_EQ(back, tuple("echoed", list(1, "two"), port));
    p.send(port, "stop");
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(testing::kind(reason), "exit_code");
    EXPECT_EQ(testing::field(reason, "code"), "0");
  });
}

TEST(SpawnExecutable, AnExecFailureIsStartFailed) {
  testing::run_system([](Process& p) {
    auto [port, ref] = p.spawn_executable_monitor({"/nonexistent/occasional-port"});
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(testing::kind(reason), "start_failed");
    EXPECT_NE(testing::field(reason, "error").find("No such file"), std::string::npos)
        << testing::field(reason, "error");
  });
}

}  // namespace
}  // namespace occasional
