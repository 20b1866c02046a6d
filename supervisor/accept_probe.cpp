#include "supervisor/accept_probe.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace occasional::supervisor {

namespace {

// Bounds on what one probe reads: a worker's process tree, and the fd sets
// of one poll()/select() call.
constexpr int kMaxProcesses = 256;
constexpr int kMaxDepth = 4;
constexpr uint64_t kMaxPollFds = 4096;
constexpr uint64_t kMaxSelectFds = 1024;

// Bounds the work of one probe whatever the worker's tree looks like: a
// probe runs on the event loop.
constexpr int kMaxReads = 1024;

struct Budget {
  int left = kMaxReads;
  // Whether one more read of /proc or of the worker's memory may be made.
  bool spend() { return left-- > 0; }
  bool spent() const { return left < 0; }
};

enum class Read { ok, gone, denied };

// With ::read rather than ifstream: the kernel checks ptrace access for
// /proc/PID/task/TID/syscall (and a non-dumpable worker's files) when it is
// read, not when it is opened, so a refusal only shows as read()'s errno.
Read read_file(const std::string& path, std::string& out, std::error_code& error) {
  out.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == EACCES || e == EPERM) {
      error.assign(e, std::generic_category());
      return Read::denied;
    }
    return Read::gone;
  }
  char buf[4096];
  Read result = Read::ok;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EACCES || e == EPERM) {
      error.assign(e, std::generic_category());
      result = Read::denied;
    } else {
      result = Read::gone;  // ESRCH: the thread or process has gone meanwhile
    }
    break;
  }
  ::close(fd);
  return result;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  ::closedir(d);
  return names;
}

// The inode of the socket `fd` is in process `pid`; 0 if it is no socket.
ino_t socket_inode_of(pid_t pid, uint64_t fd, Budget& budget) {
  if (!budget.spend()) return 0;
  char link[64];
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
  if (n <= 0) return 0;
  link[n] = '\0';
  unsigned long long inode = 0;
  if (std::sscanf(link, "socket:[%llu]", &inode) != 1) return 0;
  return static_cast<ino_t>(inode);
}

bool read_memory(pid_t pid, uint64_t address, void* out, size_t size, std::error_code& error) {
  iovec local{out, size};
  iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(address)), size};
  const ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(size)) return true;
  if (n < 0 && (errno == EPERM || errno == EACCES)) error.assign(errno, std::generic_category());
  return false;
}

bool polls_for(pid_t pid, uint64_t fds_at, uint64_t count, ino_t inode, Budget& budget,
               std::error_code& error) {
  if (count == 0 || count > kMaxPollFds) return false;
  std::vector<pollfd> fds(count);
  if (!read_memory(pid, fds_at, fds.data(), count * sizeof(pollfd), error)) return false;
  for (const pollfd& p : fds)
    if (p.fd >= 0 && (p.events & POLLIN) &&
        socket_inode_of(pid, static_cast<uint64_t>(p.fd), budget) == inode)
      return true;
  return false;
}

bool selects_for(pid_t pid, uint64_t nfds, uint64_t readfds_at, ino_t inode, Budget& budget,
                 std::error_code& error) {
  if (readfds_at == 0 || nfds == 0) return false;
  nfds = std::min(nfds, kMaxSelectFds);
  std::vector<unsigned char> bits((nfds + 7) / 8);
  if (!read_memory(pid, readfds_at, bits.data(), bits.size(), error)) return false;
  for (uint64_t fd = 0; fd < nfds; ++fd)
    if ((bits[fd / 8] >> (fd % 8)) & 1)
      if (socket_inode_of(pid, fd, budget) == inode) return true;
  return false;
}

// An epoll fd's fdinfo has a line per registered fd:
// "tfd: 3 events: 19 data: ... pos:0 ino:5f5d sdev:9" (events and ino in hex).
bool epoll_holds(pid_t pid, uint64_t epfd, ino_t inode, Budget& budget, std::error_code& error) {
  std::string info;
  if (!budget.spend()) return false;
  if (read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(epfd), info, error) !=
      Read::ok)
    return false;
  std::istringstream lines(info);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with("tfd:")) continue;
    const auto events_at = line.find("events:");
    const auto ino_at = line.find("ino:");
    if (events_at == std::string::npos || ino_at == std::string::npos) continue;
    const unsigned long events = std::strtoul(line.c_str() + events_at + 7, nullptr, 16);
    const unsigned long long ino = std::strtoull(line.c_str() + ino_at + 4, nullptr, 16);
    if ((events & POLLIN) && static_cast<ino_t>(ino) == inode) return true;
  }
  return false;
}

// /proc/PID/task/TID/syscall: "NR ARG0 ... ARG5 SP PC" while the thread is
// in a system call, "running" or "-1 ..." otherwise.
bool thread_waits(pid_t pid, const std::string& syscall_line, ino_t inode, Budget& budget,
                  std::error_code& error) {
  std::istringstream in(syscall_line);
  long nr = -1;
  if (!(in >> nr) || nr < 0) return false;
  uint64_t arg[6] = {};
  for (uint64_t& a : arg) in >> std::hex >> a;
  switch (nr) {
    case SYS_accept:
    case SYS_accept4:
      return socket_inode_of(pid, arg[0], budget) == inode;
#ifdef SYS_poll
    case SYS_poll:
#endif
    case SYS_ppoll:
      return polls_for(pid, arg[0], arg[1], inode, budget, error);
#ifdef SYS_select
    case SYS_select:
#endif
    case SYS_pselect6:
      return selects_for(pid, arg[0], arg[1], inode, budget, error);
#ifdef SYS_epoll_wait
    case SYS_epoll_wait:
#endif
    case SYS_epoll_pwait:
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
      return epoll_holds(pid, arg[0], inode, budget, error);
    default:
      return false;
  }
}

}  // namespace

AcceptProbe probe_accepting(pid_t pid, ino_t socket_inode, std::error_code& error) {
  error.clear();
  struct Pending {
    pid_t pid;
    int depth;
  };
  std::vector<Pending> todo{{pid, 0}};
  int seen = 0;
  Budget budget;
  while (!todo.empty() && seen < kMaxProcesses && budget.spend()) {
    const Pending p = todo.back();
    todo.pop_back();
    ++seen;
    const std::string tasks = "/proc/" + std::to_string(p.pid) + "/task";
    for (const std::string& tid : list_dir(tasks)) {
      if (!budget.spend()) break;
      std::string line;
      const Read r = read_file(tasks + "/" + tid + "/syscall", line, error);
      if (r == Read::denied) return AcceptProbe::cannot_tell;
      if (r == Read::ok && thread_waits(p.pid, line, socket_inode, budget, error))
        return AcceptProbe::accepting;
      if (error) return AcceptProbe::cannot_tell;
      std::string children;
      std::error_code ignored;  // a child we may not read is one we cannot tell about
      if (p.depth < kMaxDepth && budget.spend() &&
          read_file(tasks + "/" + tid + "/children", children, ignored) == Read::ok) {
        std::istringstream list(children);
        pid_t child;
        while (list >> child) todo.push_back({child, p.depth + 1});
      }
    }
  }
  if (budget.spent()) {
    // A tree too large to look at in one probe is one we cannot tell about.
    error = std::make_error_code(std::errc::value_too_large);
    return AcceptProbe::cannot_tell;
  }
  return AcceptProbe::not_yet;
}

}  // namespace occasional::supervisor
