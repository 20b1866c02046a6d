// The seed's "simple hello", ported: process zero spawns say_hello, sends it
// (its own address, a name) twice, and checks each greeting.
#include <occasional/process.hpp>

#include <cstdio>

using namespace occasional;

Value say_hello(Process& p) {
  for (;;) {
    Value m = p.receive();
    if (const Tuple* t = m.as_tuple(); t && t->size() == 2 && (*t)[0].as_address())
      p.send(*(*t)[0].as_address(), "hello " + *(*t)[1].as_string());
  }
}

int main() {
  return run([](Process& p) -> Value {
    Address h = p.spawn(say_hello);
    for (const char* name : {"foo", "bar"}) {
      p.send(h, tuple(p.self(), name));
      Value x = p.receive();
      if (x != Value(std::string("hello ") + name)) {
        std::fprintf(stderr, "unexpected reply %s\n", x.to_string().c_str());
        return 1;
      }
      std::printf("%s\n", x.as_string()->c_str());
    }
    return 0;
  });
}
