#pragma once

#include <string>
#include <vector>

namespace occasional::gateway {

// `occasional ctl [--admin ADDR] [--token T | --token-file F] COMMAND`: a
// client of the admin API. Prints the answer; returns the exit status: 0
// done, 1 the coordinator refused (its message is printed), 2 bad command
// line, 3 the admin endpoint could not be reached.
int run_ctl(const std::vector<std::string>& args);

extern const char* const kCtlUsage;

}  // namespace occasional::gateway
