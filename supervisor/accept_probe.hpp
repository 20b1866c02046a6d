#pragma once

#include <sys/types.h>

#include <system_error>

namespace occasional::supervisor {

enum class AcceptProbe {
  accepting,    // a thread waits on the socket to accept
  not_yet,      // none does now (starting up, busy, or never)
  cannot_tell,  // /proc or the process's memory cannot be read: see `error`
};

// Whether a listen_fds worker has got as far as accepting connections:
// whether `pid`, one of its threads or one of its descendants (gunicorn's
// workers are children of its arbiter) waits for the listening socket with
// inode `socket_inode` to become readable — blocked in accept() on it, in
// poll()/select() with it among the fds read for, or in epoll_wait() on an
// epoll set that holds it. Read from /proc/PID/task/TID/syscall, the epoll
// fd's fdinfo and, for poll and select, the fd sets in the waiter's memory
// (process_vm_readv: the caller needs ptrace access, as a parent of the same
// user has). A thread running at the moment is not seen: ask again later.
AcceptProbe probe_accepting(pid_t pid, ino_t socket_inode, std::error_code& error);

}  // namespace occasional::supervisor
