#pragma once

#include <string>
#include <vector>

namespace occasional::supervisor {

// What to run. The child gets fds 0, 1, 2 from the coordinator (or the ones
// named here), then `pass_fds` as 3, 4, ... in order, and nothing else.
struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // "KEY=VALUE", added to (and overriding) the coordinator's
  std::string cwd;                // empty: the coordinator's
  int stdin_fd = 0;
  int stdout_fd = 1;
  int stderr_fd = 2;
  std::vector<int> pass_fds;  // borrowed; the caller keeps ownership
  // Adds LISTEN_PID=<the child's own pid> (systemd socket activation), which
  // only the child can know.
  bool set_listen_pid = false;
};

}  // namespace occasional::supervisor
