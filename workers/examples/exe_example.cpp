// exe: run a program, a pipeline, and talk to bc (docs/exe.md).
#include <occasional/exe.hpp>

#include <chrono>
#include <cstdio>

using namespace occasional;
using namespace std::chrono_literals;

int main() {
  exe::Options o;
  o.input = "pear\napple\npear\n";
  exe::Result r = exe::run({"sort"}, o);
  std::printf("sort: %s\n%s", r.status.describe().c_str(), r.out.bytes.c_str());

  exe::PipelineResult p = exe::pipeline({{"grep", "pear"}, {"uniq", "-c"}}, o);
  for (const auto& s : p.stages) std::printf("stage: %s\n", s.describe().c_str());
  std::printf("%s", p.out.bytes.c_str());

  exe::InteractOptions on_a_terminal;
  on_a_terminal.pty = true;
  exe::Interaction bc = exe::interact({"bc", "-q"}, on_a_terminal);
  bc.send("2^64");
  if (auto m = bc.expect(R"((\d{20}))", 10s)) std::printf("bc says 2^64 = %s\n", m->text.c_str());
  bc.close_input();
  std::printf("bc: %s\n", bc.wait(10s).describe().c_str());
  return r.ok() && p.ok() ? 0 : 1;
}
