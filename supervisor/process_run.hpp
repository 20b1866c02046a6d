#pragma once

#include <functional>

#include "workers/process.hpp"
#include "workers/value.hpp"

namespace occasional::supervisor {

class ProcessHub;

// occasional::run(), with process zero's whole exit reason
// (docs/messages.md "Exit reasons") instead of an exit code.
// `at_zero_exit` sees the hub once process zero has exited, before the
// other processes are killed (tests read its counters there).
Map run_for_reason(std::function<Value(Process&)> zero,
                   const std::function<void(const ProcessHub&)>& at_zero_exit = {});

// run()'s exit code for process zero's reason: a returned integer as is, 0
// for another returned value, 128+N for signal N (137 for linked: it was
// SIGKILLed), the code for exit_code, 1 otherwise.
int exit_code_for(const Map& reason);

}  // namespace occasional::supervisor
