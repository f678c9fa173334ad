// Non-owning row-major matrix views, in the spirit of Eigen::Map: a pointer,
// a number of rows and a number of columns. The core reads the caller's data
// through these and never copies a data set.
#pragma once

#include <cstddef>

namespace chainrule {

template <typename T>
struct MatrixView {
    T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;

    T* row(std::size_t r) const { return data + r * cols; }
    std::size_t size() const { return rows * cols; }
};

template <typename T>
struct ConstMatrixView {
    const T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;

    ConstMatrixView() = default;
    ConstMatrixView(const T* data_, std::size_t rows_, std::size_t cols_)
        : data(data_), rows(rows_), cols(cols_) {}
    ConstMatrixView(MatrixView<T> m) : data(m.data), rows(m.rows), cols(m.cols) {}  // NOLINT: implicit by design

    const T* row(std::size_t r) const { return data + r * cols; }
    std::size_t size() const { return rows * cols; }
};

}  // namespace chainrule
