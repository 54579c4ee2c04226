//! Kernels over ndarray views.
