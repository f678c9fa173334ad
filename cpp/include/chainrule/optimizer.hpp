// How training turns a gradient into a step: the optimizer, its state from
// step to step, the learning-rate schedule and the L2 penalty. The equations
// are those of docs/math.md, "Optimizers".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "chainrule/buffer.hpp"

namespace chainrule {

// The numeric values are part of the Python API's spelling only (names.cpp).
enum class OptimizerKind : std::uint32_t { sgd = 0, adam = 1, adamw = 2 };

// Which formulas: torch.optim's (the default), or scikit-learn's optimizer
// classes (sklearn.neural_network._stochastic_optimizers), which differ in
// where the learning rate enters SGD's velocity and where Adam's eps sits.
enum class OptimizerForm : std::uint32_t { torch = 0, sklearn = 1 };

struct OptimizerOptions {
    OptimizerKind kind = OptimizerKind::sgd;
    OptimizerForm form = OptimizerForm::torch;
    double momentum = 0.0;      // sgd: in [0, 1)
    bool nesterov = false;      // sgd, with momentum > 0
    double weight_decay = 0.0;  // >= 0; sgd and adam: wd * w added to the gradient; adamw: w *= 1 - lr wd
    double beta1 = 0.9;         // adam, adamw: in [0, 1)
    double beta2 = 0.999;       // adam, adamw: in [0, 1)
    double eps = 1e-8;          // adam, adamw: > 0
    bool amsgrad = false;       // adam, adamw (torch form)
};

// The state an optimizer carries from one step to the next, for a network of
// `num_params` parameters in the layout of Network::params(): the steps taken
// and up to three buffers (sgd: the velocity; adam: the first and second
// moments, and with amsgrad their running maximum). Empty until the first
// step. It belongs to one network and one set of OptimizerOptions.
template <typename T>
struct OptimizerState {
    std::uint64_t steps = 0;
    Buffer<T> slots[3] = {Buffer<T>(StaggeredAllocator<T>(2)), Buffer<T>(StaggeredAllocator<T>(3)),
                          Buffer<T>(StaggeredAllocator<T>(4))};
};

// The learning rate of each epoch, from the base rate lr (FitOptions::learning_rate):
//   constant:    lr
//   invscaling:  lr / (t + 1)^power_t, t the records trained on before the epoch (scikit-learn's)
//   adaptive:    lr, divided by 5 each time the stopping rule (tol, n_iter_no_change) fires, until
//                it would fall below 1e-6 (scikit-learn's; training stops then)
//   step:        lr * gamma^floor(epoch / step_size)
//   cosine:      eta_min + (lr - eta_min) (1 + cos(pi epoch / t_max)) / 2, epoch counted from the
//                first fit of the run (torch's CosineAnnealingLR, without restarts: held at
//                eta_min past t_max)
// or, when `custom` is set, custom(epoch, lr) for every epoch (epoch counts from the start
// of the run; its result must be a finite number > 0).
enum class ScheduleKind : std::uint32_t { constant = 0, invscaling = 1, adaptive = 2, step = 3, cosine = 4 };

struct ScheduleOptions {
    ScheduleKind kind = ScheduleKind::constant;
    double power_t = 0.5;
    std::size_t step_size = 1;
    double gamma = 0.1;
    std::size_t t_max = 1;
    double eta_min = 0.0;
    std::function<double(std::size_t epoch, double lr)> custom;
};

// Everything a training run carries from one fit call to the next, so that
// fit(epochs=a) then fit(epochs=b) with one TrainingState equals fit(epochs=a+b):
// the optimizer's state, the epochs and records trained so far, the shuffling
// generator, and the schedule's and stopping rule's running values.
template <typename T>
struct TrainingState {
    OptimizerState<T> optimizer;
    std::uint64_t epochs = 0;        // epochs completed
    std::uint64_t records = 0;       // records trained on
    bool seeded = false;             // the generator below was seeded (from FitOptions::seed)
    std::uint64_t seed = 0;          // that seed, which also keys the dropout masks
    std::uint64_t generator[4] = {};  // the shuffling generator's state after the last epoch
    double learning_rate = 0.0;      // adaptive: the current rate (0: not set yet)
    double best_cost = 0.0;          // the stopping rule: best epoch cost so far ...
    std::uint64_t epochs_without_improvement = 0;  // ... and the epochs since it
    bool has_best = false;
};

}  // namespace chainrule
