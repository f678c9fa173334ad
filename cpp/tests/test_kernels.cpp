#include "check.hpp"
TEST_MAIN()
