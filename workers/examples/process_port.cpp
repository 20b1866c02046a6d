// A process started from an executable (Process::spawn_executable): it
// speaks the control messages on fd 3. ("echo", from, v) is answered with
// ("echoed", v, self) to `from`; "stop" ends it (exit code 0).
#include <occasional/process.hpp>

using namespace occasional;

int main() {
  Process p = Process::attach();
  for (;;) {
    Value m = p.receive();
    if (m == Value("stop")) return 0;
    const Tuple* t = m.as_tuple();
    if (t && t->size() == 3 && (*t)[0] == Value("echo") && (*t)[1].as_address())
      p.send(*(*t)[1].as_address(), tuple("echoed", (*t)[2], p.self()));
  }
}
