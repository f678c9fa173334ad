// Data-parallel training of one network by several MPI processes: each holds
// a shard of the records, and chainrule's fit sums the gradients through the
// reducer below (docs/math.md, "Distributed training"). The core knows no
// MPI: the reducer is this program's.
//
//   mpiexec -n 2 ./mpi_train [model_path]
//
// Every rank makes the same seeded data set (two interleaved rings), takes
// its contiguous shard, trains, and checks that its parameters equal rank 0's
// bit for bit; rank 0 writes the model.
#include <mpi.h>

#include <chainrule/chainrule.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

namespace {

// The sum of values[0, count) over the ranks of `comm`, taken in rank order
// for every element. MPI_Allreduce with MPI_SUM would move fewer bytes, but
// MPI does not promise the order of its additions, and a different order
// gives different bits: a run would not repeat. MPI_Allgather brings every
// rank's buffer to every rank (fine for the few ranks and small networks of
// an example; chainrule.distributed's RankOrderSum splits large buffers).
template <typename T>
void rank_order_sum(MPI_Comm comm, MPI_Datatype type, T* values, std::size_t count) {
    int size = 1;
    MPI_Comm_size(comm, &size);
    std::vector<T> every(count * static_cast<std::size_t>(size));
    MPI_Allgather(values, static_cast<int>(count), type, every.data(), static_cast<int>(count), type, comm);
    for (std::size_t i = 0; i < count; ++i) {
        T sum = every[i];
        for (int r = 1; r < size; ++r) sum += every[static_cast<std::size_t>(r) * count + i];
        values[i] = sum;
    }
}

// Record i of the rings: a point on one of two concentric rings, label 1 on the outer.
void ring_record(std::size_t i, double* x, double* y) {
    const double angle = 2.399963229728653 * static_cast<double>(i);  // the golden angle: spread, no generator
    const double radius = (i % 2 == 0) ? 1.0 : 2.0;
    x[0] = radius * std::cos(angle);
    x[1] = radius * std::sin(angle);
    y[0] = (i % 2 == 0) ? 0.0 : 1.0;
}

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int status = 0;
    try {
        // This rank's shard of the 1000 records: contiguous, near-equal.
        const std::size_t num_records = 1000, per_rank = num_records / size, extra = num_records % size;
        const std::size_t first = rank * per_rank + std::min<std::size_t>(rank, extra);
        const std::size_t rows = per_rank + (static_cast<std::size_t>(rank) < extra ? 1 : 0);
        std::vector<double> X(rows * 2), Y(rows);
        for (std::size_t r = 0; r < rows; ++r) ring_record(first + r, &X[r * 2], &Y[r]);

        using chainrule::Activation;
        chainrule::Network<double> net({2, 16, 1}, {Activation::tanh, Activation::sigmoid}, chainrule::Loss::bce,
                                       /*seed=*/rank);  // fit copies rank 0's parameters to every rank
        chainrule::Reducer<double> reducer;
        reducer.rank = static_cast<std::size_t>(rank);
        reducer.size = static_cast<std::size_t>(size);
        reducer.sum = [](double* v, std::size_t n) { rank_order_sum(MPI_COMM_WORLD, MPI_DOUBLE, v, n); };
        reducer.sum_scalars = reducer.sum;

        chainrule::FitOptions options;
        options.epochs = 200;
        options.batch_size = 16;  // per rank: a step takes 16 records of every shard
        options.learning_rate = 0.01;
        options.optimizer.kind = chainrule::OptimizerKind::adam;
        const std::vector<double> history =
            net.fit({X.data(), rows, 2}, {Y.data(), rows, 1}, options, {}, {}, nullptr, nullptr, &reducer);

        // Every rank took the same steps: its parameters are rank 0's, bit for bit.
        std::vector<double> params0(net.params(), net.params() + net.num_params());
        MPI_Bcast(params0.data(), static_cast<int>(params0.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
        const bool same = std::memcmp(params0.data(), net.params(), params0.size() * sizeof(double)) == 0;
        int all_same = same ? 1 : 0;
        MPI_Allreduce(MPI_IN_PLACE, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (rank == 0) {
            std::printf("%d processes, %zu epochs: cost %.4f -> %.4f; parameters identical on every rank: %s\n",
                        size, history.size(), history.front(), history.back(), all_same ? "yes" : "NO");
            if (argc > 1) chainrule::save(net, argv[1]);
        }
        if (!all_same || !(history.back() < 0.1)) status = 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        status = 1;
    }
    MPI_Finalize();
    return status;
}
