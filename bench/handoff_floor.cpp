// The kernel's share of a handoff, without occasional: what accept ->
// "another process holds the fd" costs on this machine with nothing else in
// the way. A parent accepts on a loopback listener and passes each
// connection with SCM_RIGHTS, together with its CLOCK_MONOTONIC accept
// time, over a SOCK_SEQPACKET pair to a forked child, which records the
// difference when recvmsg returns. No JSON, no balancer, no event loop
// unless --epoll asks both sides to wait in epoll_wait as an event loop does.
//
//   handoff_floor [--epoll] N REPORT
//
// prints the listening port on stdout, serves N connections, and the child
// writes its N samples (nanoseconds, one per line) to REPORT.
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "workers/control_channel.hpp"

namespace {

int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "handoff_floor: %s: %s\n", what, std::strerror(errno));
  std::_Exit(1);
}

// Blocks in epoll_wait until fd is readable, as an event loop would.
void wait_readable(int epfd) {
  epoll_event ev{};
  while (::epoll_wait(epfd, &ev, 1, -1) < 0)
    if (errno != EINTR) die("epoll_wait");
}

int make_epoll(int fd) {
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
  return epfd;
}

void receive(int link, long n, bool use_epoll, const char* report) {
  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(n));
  const int epfd = use_epoll ? make_epoll(link) : -1;
  for (long i = 0; i < n; ++i) {
    if (use_epoll) wait_readable(epfd);
    int64_t accepted_at = 0;
    iovec iov{&accepted_at, sizeof accepted_at};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(link, &msg, MSG_CMSG_CLOEXEC) != sizeof accepted_at) die("recvmsg");
    const int64_t held = now_ns();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) die("no fd in the message");
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    samples.push_back(held - accepted_at);
    ::close(fd);
  }
  FILE* out = std::fopen(report, "w");
  if (!out) die(report);
  for (int64_t s : samples) std::fprintf(out, "%lld\n", static_cast<long long>(s));
  std::fclose(out);
}

void serve(int listener, int link, long n, bool use_epoll) {
  const int epfd = use_epoll ? make_epoll(listener) : -1;
  for (long i = 0; i < n;) {
    if (use_epoll) wait_readable(epfd);
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept4");
    }
    int64_t accepted_at = now_ns();
    // The same sendmsg occasional makes (MSG_DONTWAIT; one connection is in
    // flight at a time, so the link never fills).
    const std::string_view payload(reinterpret_cast<const char*>(&accepted_at), sizeof accepted_at);
    if (occasional::workers::send_datagram(link, payload, fd)) die("sendmsg");
    ::close(fd);
    ++i;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int arg = 1;
  bool use_epoll = false;
  if (argc > 1 && std::string(argv[1]) == "--epoll") {
    use_epoll = true;
    ++arg;
  }
  if (argc - arg != 2) {
    std::fprintf(stderr, "usage: handoff_floor [--epoll] N REPORT\n");
    return 2;
  }
  const long n = std::stol(argv[arg]);
  const char* report = argv[arg + 1];

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) die("socketpair");
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 4096) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    die("listen on 127.0.0.1:0");

  const pid_t child = ::fork();
  if (child < 0) die("fork");
  if (child == 0) {
    ::close(pair[0]);
    ::close(listener);
    receive(pair[1], n, use_epoll, report);
    std::_Exit(0);
  }
  ::close(pair[1]);
  std::printf("%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  serve(listener, pair[0], n, use_epoll);
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "handoff_floor: the receiving child failed\n");
    return 1;
  }
  return 0;
}
