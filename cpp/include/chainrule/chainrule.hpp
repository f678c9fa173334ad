// chainrule: a small, exact and fast trainer for dense neural networks.
// The one header an embedder includes.
//
//   chainrule::Network<double> net({2, 4, 1}, {Activation::sigmoid, Activation::sigmoid},
//                                  Loss::bce, /*seed=*/0);
//   std::vector<double> history = net.fit({X, rows, 2}, {Y, rows, 1}, options);
//   net.predict({out, rows, 1}, {X, rows, 2});
//   chainrule::save(net, "model.crnn");
#pragma once

#include "chainrule/buffer.hpp"
#include "chainrule/errors.hpp"
#include "chainrule/matrix.hpp"
#include "chainrule/model_file.hpp"
#include "chainrule/names.hpp"
#include "chainrule/network.hpp"
#include "chainrule/optimizer.hpp"
#include "chainrule/threads.hpp"
#include "chainrule/version.hpp"
