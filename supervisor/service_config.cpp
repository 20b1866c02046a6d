#include "supervisor/service_config.hpp"

namespace occasional::supervisor {

const char* readiness_name(Readiness readiness) {
  switch (readiness) {
    case Readiness::notify:
      return "notify";
    case Readiness::started:
      return "started";
    case Readiness::accepting:
      return "accepting";
  }
  return "?";
}

std::optional<Readiness> parse_readiness(std::string_view name) {
  for (Readiness r : {Readiness::notify, Readiness::started, Readiness::accepting})
    if (name == readiness_name(r)) return r;
  return std::nullopt;
}

}  // namespace occasional::supervisor
