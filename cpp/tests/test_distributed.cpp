// Network<T>::fit with a Reducer, its processes played by threads of this
// program: against one process taking the same steps, and failing together.
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "chainrule/chainrule.hpp"
#include "check.hpp"
#include "random_values.hpp"
#include "runtime/random.hpp"

using namespace chainrule;

namespace {

// The collective of `size` threads: each puts its buffer in its slot, and
// after a barrier each adds the slots in rank order.
class ThreadSum {
public:
    explicit ThreadSum(std::size_t size) : size_(size), slots_(size) {}

    template <typename V>
    void sum(std::size_t rank, V* values, std::size_t count) {
        slots_[rank].assign(reinterpret_cast<const unsigned char*>(values),
                            reinterpret_cast<const unsigned char*>(values + count));
        wait();
        for (std::size_t i = 0; i < count; ++i) {
            V total;
            std::memcpy(&total, slots_[0].data() + i * sizeof(V), sizeof(V));
            for (std::size_t r = 1; r < size_; ++r) {
                V part;
                std::memcpy(&part, slots_[r].data() + i * sizeof(V), sizeof(V));
                total += part;
            }
            values[i] = total;
        }
        wait();  // nobody refills a slot before everyone has read it
    }

    Reducer<double> reducer(std::size_t rank) {
        Reducer<double> r;
        r.rank = rank;
        r.size = size_;
        r.sum = [this, rank](double* v, std::size_t n) { sum(rank, v, n); };
        r.sum_scalars = r.sum;
        return r;
    }

private:
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const std::size_t generation = generation_;
        if (++arrived_ == size_) {
            arrived_ = 0;
            ++generation_;
            all_arrived_.notify_all();
        } else {
            all_arrived_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    std::size_t size_;
    std::vector<std::vector<unsigned char>> slots_;
    std::mutex mutex_;
    std::condition_variable all_arrived_;
    std::size_t arrived_ = 0, generation_ = 0;
};

using test_data::random_values;

constexpr std::size_t kInputs = 3, kOutputs = 2, kRecords = 23;
const std::size_t kShardStart[] = {0, 12, 16, 23};  // shards of 12, 4 and 7 records

Network<double> make_network(std::uint64_t seed) {
    return Network<double>({kInputs, 5, kOutputs}, {Activation::tanh, Activation::sigmoid}, Loss::bce, seed);
}

FitOptions adam_options() {
    FitOptions options;
    options.epochs = 3;
    options.batch_size = 3;
    options.shuffle = false;
    options.learning_rate = 0.01;
    options.optimizer.kind = OptimizerKind::adam;
    return options;
}

}  // namespace

TEST(distributed_fit_equals_one_process_on_the_joint_batches) {
    const auto X = random_values(kRecords * kInputs, 1);
    auto Y = random_values(kRecords * kOutputs, 2);
    for (double& y : Y) y = y > 0 ? 1.0 : 0.0;
    const FitOptions options = adam_options();
    ThreadSum collective(3);
    std::vector<Network<double>> nets;
    for (std::size_t r = 0; r < 3; ++r) nets.push_back(make_network(10 + r));  // fit copies rank 0's
    std::vector<std::vector<double>> histories(3);
    std::vector<std::thread> ranks;
    for (std::size_t r = 0; r < 3; ++r) {
        ranks.emplace_back([&, r] {
            const Reducer<double> reducer = collective.reducer(r);
            const std::size_t rows = kShardStart[r + 1] - kShardStart[r];
            histories[r] = nets[r].fit({X.data() + kShardStart[r] * kInputs, rows, kInputs},
                                       {Y.data() + kShardStart[r] * kOutputs, rows, kOutputs}, options, {}, {},
                                       nullptr, nullptr, &reducer);
        });
    }
    for (std::thread& t : ranks) t.join();

    // One process: step j takes records [3j, 3j + 3) of every shard, in rank order.
    Network<double> one = make_network(10);
    TrainingState<double> run;
    FitOptions step = options;
    step.epochs = 1;
    for (std::size_t epoch = 0; epoch < options.epochs; ++epoch) {
        double cost = 0.0;
        for (std::size_t j = 0; j < 4; ++j) {  // the largest shard (12) takes 4 steps of 3
            std::vector<double> x, y;
            for (std::size_t r = 0; r < 3; ++r) {
                const std::size_t end = std::min(kShardStart[r] + 3 * j + 3, kShardStart[r + 1]);
                for (std::size_t i = kShardStart[r] + 3 * j; i < end; ++i) {
                    x.insert(x.end(), X.begin() + i * kInputs, X.begin() + (i + 1) * kInputs);
                    y.insert(y.end(), Y.begin() + i * kOutputs, Y.begin() + (i + 1) * kOutputs);
                }
            }
            const std::size_t rows = y.size() / kOutputs;
            step.batch_size = rows;
            cost += one.fit({x.data(), rows, kInputs}, {y.data(), rows, kOutputs}, step, {}, {}, &run)[0] * rows;
        }
        for (std::size_t r = 0; r < 3; ++r) CHECK_CLOSE(histories[r][epoch], cost / kRecords, 1e-12);
    }
    double largest = 0.0;
    for (std::size_t i = 0; i < one.num_params(); ++i) largest = std::max(largest, std::abs(one.params()[i]));
    for (std::size_t i = 0; i < one.num_params(); ++i) {
        CHECK(std::abs(nets[0].params()[i] - one.params()[i]) <= 1e-12 * largest);
        CHECK(nets[1].params()[i] == nets[0].params()[i]);
        CHECK(nets[2].params()[i] == nets[0].params()[i]);
    }
}

TEST(a_bad_shard_makes_every_rank_throw_naming_it) {
    auto X = random_values(kRecords * kInputs, 1);
    auto Y = random_values(kRecords * kOutputs, 2);
    for (double& y : Y) y = y > 0 ? 1.0 : 0.0;
    X[(kShardStart[2] + 1) * kInputs] = NAN;  // in rank 2's shard
    ThreadSum collective(3);
    std::vector<Network<double>> nets;
    for (std::size_t r = 0; r < 3; ++r) nets.push_back(make_network(10 + r));
    const std::vector<double> before(nets[0].params(), nets[0].params() + nets[0].num_params());
    std::vector<std::string> errors(3);
    std::vector<std::thread> ranks;
    for (std::size_t r = 0; r < 3; ++r) {
        ranks.emplace_back([&, r] {
            const Reducer<double> reducer = collective.reducer(r);
            const std::size_t rows = kShardStart[r + 1] - kShardStart[r];
            try {
                nets[r].fit({X.data() + kShardStart[r] * kInputs, rows, kInputs},
                            {Y.data() + kShardStart[r] * kOutputs, rows, kOutputs}, adam_options(), {}, {}, nullptr,
                            nullptr, &reducer);
            } catch (const std::invalid_argument& e) {
                errors[r] = e.what();
            }
        });
    }
    for (std::thread& t : ranks) t.join();
    for (std::size_t r = 0; r < 3; ++r) {
        CHECK(errors[r].rfind("rank 2 of 3 failed; rank 2: X", 0) == 0);
        CHECK(errors[r].find("no process trained") != std::string::npos);
    }
    CHECK(std::memcmp(before.data(), nets[0].params(), before.size() * sizeof(double)) == 0);
}

TEST(seeds_that_a_double_cannot_tell_apart_are_still_a_disagreement) {
    // 2^60 and 2^60 + 1 are the same double: the seeds are compared exactly.
    auto X = random_values(kRecords * kInputs, 1);
    auto Y = random_values(kRecords * kOutputs, 2);
    for (double& y : Y) y = y > 0 ? 1.0 : 0.0;
    ThreadSum collective(2);
    std::vector<Network<double>> nets;
    for (std::size_t r = 0; r < 2; ++r) nets.push_back(make_network(10));
    std::vector<std::string> errors(2);
    std::vector<std::thread> ranks;
    for (std::size_t r = 0; r < 2; ++r) {
        ranks.emplace_back([&, r] {
            const Reducer<double> reducer = collective.reducer(r);
            FitOptions options = adam_options();
            options.shuffle = true;
            options.seed = (std::uint64_t{1} << 60) + r;
            try {
                nets[r].fit({X.data() + r * 11 * kInputs, 11, kInputs}, {Y.data() + r * 11 * kOutputs, 11, kOutputs},
                            options, {}, {}, nullptr, nullptr, &reducer);
            } catch (const std::invalid_argument& e) {
                errors[r] = e.what();
            }
        });
    }
    for (std::thread& t : ranks) t.join();
    for (std::size_t r = 0; r < 2; ++r) {
        CHECK(errors[r].find("the processes disagree on the seed's low 32 bits") == 0);
    }
}

int main() { return check::run_all(); }
