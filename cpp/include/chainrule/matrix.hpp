// Non-owning row-major matrix views, in the spirit of Eigen::Map: a pointer,
// a number of rows and a number of columns. The core reads the caller's data
// through these and never copies a data set.
#pragma once

#include <cstddef>
#include <cstdint>

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

// A non-owning view of a matrix in CSR (compressed sparse row) form, the
// layout of scipy.sparse.csr_matrix: the stored entries of row r are
// (indices[k], values[k]) for k in [indptr[r], indptr[r + 1]). Index is
// std::int32_t or std::int64_t (scipy's two index types); the Network
// overloads that take it are instantiated for both. The entries of a row
// need not be sorted, and a column stored twice counts as the sum of its
// entries (scipy's meaning of such a matrix). The core reads the three
// arrays in place; it checks that indptr is non-decreasing from >= 0 to
// <= nnz and that every index it reads lies in [0, cols).
template <typename T, typename Index>
struct CsrMatrixView {
    const Index* indptr = nullptr;   // rows + 1 offsets into indices and values
    const Index* indices = nullptr;  // nnz column indices
    const T* values = nullptr;       // nnz values
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t nnz = 0;             // the length of indices and values
};

}  // namespace chainrule
