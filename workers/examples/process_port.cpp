// A process started from an executable (Process::spawn_executable): it
// speaks the control messages on fd 3. ("echo", from, v) is answered with
// ("echoed", v, self) to `from`; ("spawn", from) with ("spawned", address)
// of a process it spawns, or ("spawned", what) when spawn throws; "stop"
// ends it (exit code 0).
#include <occasional/process.hpp>

#include <stdexcept>

using namespace occasional;

int main() {
  Process p = Process::attach();
  for (;;) {
    Value m = p.receive();
    if (m == Value("stop")) return 0;
    const Tuple* t = m.as_tuple();
    if (t && t->size() == 3 && (*t)[0] == Value("echo") && (*t)[1].as_address())
      p.send(*(*t)[1].as_address(), tuple("echoed", (*t)[2], p.self()));
    if (t && t->size() == 2 && (*t)[0] == Value("spawn") && (*t)[1].as_address()) {
      try {
        p.send(*(*t)[1].as_address(), tuple("spawned", p.spawn([](Process&) { return 0; })));
      } catch (const std::logic_error& e) {
        p.send(*(*t)[1].as_address(), tuple("spawned", e.what()));
      }
    }
  }
}
