// Service workers as processes (docs/messages.md, "Workers are processes"):
// the calls a worker with its own event loop uses. The whole path, under
// the real coordinator, is service_peers_example.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/process/process_testing.hpp"
#include "workers/process.hpp"
#include "workers/unique_fd.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::run_system;

TEST(ServiceProcesses, FromEnvironmentOutsideAWorkerIsNullopt) {
  ::unsetenv("OCCASIONAL_PROCESS_FD");
  EXPECT_FALSE(Process::from_environment());
}

TEST(ServiceProcesses, ABadProcessFdVariableIsAClearErrorAndIsRemoved) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  for (const std::string& bad :
       std::vector<std::string>{"abc", "", std::to_string(rd.get()), "999999"}) {
    SCOPED_TRACE(bad);
    ::setenv("OCCASIONAL_PROCESS_FD", bad.c_str(), 1);
    try {
      Process::from_environment();
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("OCCASIONAL_PROCESS_FD=" + bad +
                                           " is not an open "
                                           "SOCK_SEQPACKET socket"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(std::getenv("OCCASIONAL_PROCESS_FD"), nullptr);
  }
}

// wait_fd() in a poll loop: readable once a message is on its way; the
// message is then taken with receive(0ms).
TEST(ServiceProcesses, WaitFdIsReadableWhenAMessageArrives) {
  run_system([](Process& p) {
    const Address child = p.spawn([](Process& c) {
      Value from = c.receive();
      c.send(*from.as_address(), "hi");
      return 0;
    });
    const int fd = p.wait_fd();
    ASSERT_GE(fd, 0);
    p.send(child, p.self());
    p.flush();
    std::optional<Value> got;
    const auto deadline = std::chrono::steady_clock::now() + testing::kWait;
    while (!got && std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      ASSERT_GE(::poll(&pfd, 1, static_cast<int>(left.count())), 0);
      if (pfd.revents & POLLIN) got = p.receive(0ms);  // a notice alone gives nullopt
    }
    ASSERT_TRUE(got) << "wait_fd never said a message was there";
    EXPECT_EQ(*got, Value("hi"));
  });
}

// spawn clones with CLONE_PARENT: from a process whose parent is not the
// coordinator (a port behind a shell that forks) it is refused, naming
// both pids, instead of making a child the coordinator cannot watch.
TEST(ServiceProcesses, SpawnIsRefusedWhenTheParentIsNotTheCoordinator) {
  run_system([](Process& p) {
    const std::string port = OCCASIONAL_PROCESS_PORT;
    for (bool behind_shell : {false, true}) {
      SCOPED_TRACE(behind_shell ? "behind sh" : "exec'd");
      std::vector<std::string> argv =
          behind_shell ? std::vector<std::string>{"/bin/sh", "-c", port + "; exit 0"}
                       : std::vector<std::string>{port};
      const Address a = p.spawn_port(argv);
      p.send(a, tuple("spawn", p.self()));
      std::optional<Value> reply = p.receive(
          [](const Value& v) {
            const Tuple* t = v.as_tuple();
            return t && t->size() == 2 && (*t)[0] == Value("spawned");
          },
          testing::kWait);
      ASSERT_TRUE(reply);
      const Value& what = (*reply->as_tuple())[1];
      if (behind_shell) {
        ASSERT_TRUE(what.as_string()) << what.to_string();
        EXPECT_NE(what.as_string()->find("is not the coordinator (pid " +
                                         std::to_string(::getppid()) + ")"),
                  std::string::npos)
            << *what.as_string();
      } else {
        EXPECT_TRUE(what.as_address()) << what.to_string();
      }
      p.send(a, "stop");
    }
  });
}

}  // namespace
}  // namespace occasional
