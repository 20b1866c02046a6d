#include "supervisor/exit_reason.hpp"

#include <sys/wait.h>

#include "supervisor/exit_record.hpp"
#include "workers/process_control.hpp"

namespace occasional::supervisor {

namespace {

std::string_view stated_kind(const ExitEvidence& e) {
  return e.stated ? process_control::reason_kind(*e.stated) : std::string_view();
}

const Value* stated_field(const ExitEvidence& e, const char* key) {
  return e.stated ? e.stated->find(key) : nullptr;
}

}  // namespace

Map reconcile_exit(const siginfo_t& info, const ExitEvidence& evidence) {
  if (evidence.start_error) return Map{{"kind", "start_failed"}, {"error", *evidence.start_error}};
  if (info.si_code == CLD_EXITED) {
    const int code = info.si_status;
    const std::string_view kind = stated_kind(evidence);
    if (code == 0 && kind == "normal") return *evidence.stated;
    if (code == 1 && kind == "error") return *evidence.stated;
    Map out{{"kind", "exit_code"}, {"code", code}};
    if (const Value* v = stated_field(evidence, "value")) out.insert_or_assign("value", *v);
    return out;
  }
  const int signal = info.si_status;
  if (signal == SIGKILL && evidence.protocol_error)
    return process_control::reason_protocol_error(*evidence.protocol_error);
  if (signal == SIGKILL && evidence.linked_from && evidence.linked_reason)
    return Map{
        {"kind", "linked"}, {"from", *evidence.linked_from}, {"reason", *evidence.linked_reason}};
  Map out{
      {"kind", "signal"}, {"signal", signal_name(signal)}, {"core", info.si_code == CLD_DUMPED}};
  // It had reported before it was killed: its result is kept as detail.
  for (const char* key : {"value", "type", "what"})
    if (const Value* v = stated_field(evidence, key)) out.insert_or_assign(key, *v);
  return out;
}

bool abnormal_exit(const Map& reason) {
  const std::string_view kind = process_control::reason_kind(reason);
  if (kind == "normal") return false;
  if (kind == "exit_code") {
    const Value* code = reason.find("code");
    return !(code && code->as_int() == 0);
  }
  return true;
}

}  // namespace occasional::supervisor
