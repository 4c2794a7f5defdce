// The translation unit that owns the tests' shared precompiled header
// (tests/CMakeLists.txt: tether_test_pch); it defines nothing.
