#pragma once

// Real peers for supervisor tests: a listening socket, a forked process, and
// the loop run until something has happened.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>

namespace occasional::supervisor::real_peers {

// A real listening socket on 127.0.0.1, port 0.
struct Listener {
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    inode = st.st_ino;
  }
  ~Listener() { ::close(fd); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int fd = -1;
  ino_t inode = 0;
};

// A child process running `body` (which blocks; it is SIGKILLed at the end).
struct Child {
  explicit Child(const std::function<void()>& body) {
    pid = ::fork();
    if (pid == 0) {
      body();
      ::_exit(0);
    }
  }
  ~Child() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid = -1;
};

// Runs `io` until `done()` holds (true) or `timeout` has passed (false).
template <class Done>
bool run_until(boost::asio::io_context& io, Done done,
               std::chrono::steady_clock::duration timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    io.run_one_for(deadline - now);
  }
  return true;
}

}  // namespace occasional::supervisor::real_peers
