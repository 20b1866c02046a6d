#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/balancer.hpp"
#include "supervisor/service.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

// The program's version, as `occasional --version` and the `upgraded`
// event say it.
inline constexpr const char* kProgramVersion = "0.1.0";

// What a coordinator hands the binary that replaces it in place (execve,
// same pid: docs/supervision.md, "Upgrade"), in a memfd named by
// OCCASIONAL_UPGRADE_STATE. The fds it names stay open across the execve;
// everything else the new coordinator rebuilds from its configuration.
// The version changes whenever the text changes meaning: a binary that
// does not read the running coordinator's version fails its self-test, and
// the upgrade does not happen.
// Version 2 added the process hub (`processes`, and each worker's process
// channel); a version 1 state is still read.
inline constexpr int kUpgradeStateVersion = 2;
inline constexpr int kOldestUpgradeStateVersion = 1;
inline constexpr const char* kUpgradeStateEnv = "OCCASIONAL_UPGRADE_STATE";

struct UpgradeStateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct UpgradeState {
  struct CarriedService {
    std::string name;
    std::vector<supervisor::Service::CarriedWorker> workers;
    std::map<int, Balancer::Carried> balance;  // by replica
  };
  struct CarriedGuardian {
    pid_t pid = -1;
    int pipe = -1;
    int pidfd = -1;
    std::vector<pid_t> groups;
  };
  struct Counts {
    uint64_t accepted = 0;
    uint64_t handed_off = 0;
    uint64_t rejected = 0;
  };

  std::string from_version;              // the program version that wrote it
  std::map<std::string, int> listeners;  // listening sockets by listener name
  int admin = -1;                        // the admin endpoint's listening socket, or -1
  CarriedGuardian guardian;
  std::vector<CarriedService> services;
  std::map<std::string, Counts> listener_counts;  // for /v1/status
  std::string counters;                           // metrics::Metrics::carried_counters()
  // What keeps the process hub's addresses the same (version 2).
  std::optional<supervisor::ProcessHub::Carried> processes;

  // Every fd named above.
  std::vector<int> fds() const;
};

std::string encode_upgrade_state(const UpgradeState& state);
// Throws UpgradeStateError naming what it could not read (a version this
// binary does not know among them).
UpgradeState decode_upgrade_state(std::string_view text);

// A memfd holding `text`, without FD_CLOEXEC: for the execve.
UniqueFd write_upgrade_state(const std::string& text);
// The state the coordinator this process replaced left in the environment,
// or nullopt when there is none (a normal start). Closes the memfd and
// clears the variable. Throws UpgradeStateError. `memfd` is set to the
// fd the state came in (closed by then).
std::optional<UpgradeState> take_upgrade_state(int& memfd);

}  // namespace occasional::gateway
