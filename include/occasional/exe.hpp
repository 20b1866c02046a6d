#pragma once
#include "workers/exe.hpp"  // IWYU pragma: export
