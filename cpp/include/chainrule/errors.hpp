// chainrule's exceptions. Every public entry point reports a problem by
// throwing one of these (or std::bad_alloc when memory runs out); the core
// never prints and never exits.
//
//   std::invalid_argument      a bad argument: shape, value, name, range
//   chainrule::file_error      the operating system refused a file operation
//   chainrule::format_error    a model file that is not a valid chainrule file
//   chainrule::divergence_error  training produced a non-finite cost or parameter,
//                              or a result overflowed (finite inputs and parameters)
//   chainrule::busy_error      the network is already training in another thread
//   chainrule::allocation_error  (a std::bad_alloc) a network or workspace too
//                              large for this machine's memory
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace chainrule {

// Base of chainrule's own runtime errors (argument errors use std::invalid_argument).
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Opening, writing or renaming a file failed; `code` is the errno value,
// `action` what was attempted ("cannot open"), without the path.
class file_error : public error {
public:
    file_error(const std::string& message, int code, std::string path, std::string action = {})
        : error(message), code_(code), path_(std::move(path)), action_(std::move(action)) {}
    int code() const noexcept { return code_; }
    const std::string& path() const noexcept { return path_; }
    const std::string& action() const noexcept { return action_; }

private:
    int code_;
    std::string path_;
    std::string action_;
};

// A model file is truncated, corrupted, of another version, or not ours.
class format_error : public error {
public:
    using error::error;
};

// Training reached a non-finite cost or parameter; the parameters hold the
// last finite values (those before the offending step). Also thrown by
// predict, cost and compute_gradients when their result overflows the dtype
// although the parameters and inputs are finite.
class divergence_error : public error {
public:
    using error::error;
};

// The network's training workspace is in use by another thread.
class busy_error : public error {
public:
    using error::error;
};

// A buffer larger than this machine's memory (or than size_t can count) was
// asked for. A std::bad_alloc with a message a user can act on.
class allocation_error : public std::bad_alloc {
public:
    explicit allocation_error(std::string message) : message_(std::move(message)) {}
    const char* what() const noexcept override { return message_.c_str(); }

private:
    std::string message_;
};

}  // namespace chainrule
