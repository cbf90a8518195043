// Floating-point values read through their bits: comparisons whose answer must not depend
// on how the compiler treats tiny numbers (max pooling's argmax, pool.cu), and -inf.
//
// Why. CuPy compiles every kernel with -ftz=true ("flush to zero"), and puts it after the
// caller's options, where it wins. Every float32 instruction then reads a subnormal (a
// number below 1.2e-38, down to 1.4e-45) as a zero of the same sign, comparisons included:
// `value > best` is false for value = 1e-45, best = 0, and the argmax would keep the first
// zero where the reference picks the subnormal. Integer instructions are not touched by
// the flag, so a comparison made on the bits is exact whatever the compiler options are.
// (Doubles are never flushed; the same code serves them so that one template does both.)
//
// An IEEE float is sign-magnitude: one sign bit, then the magnitude, whose bits order like
// the value (the exponent sits above the fraction). Read as a signed integer, the positive
// floats are already in order; the negatives are in reverse. ordered() turns the sign and
// magnitude into an ordinary signed integer, -magnitude for a negative float, so that
//
//     ordered(a) < ordered(b)  exactly when  a < b      (for a, b not NaN)
//
// with -0 and +0 both 0 (equal, as IEEE says), subnormals in their places, and +-inf at
// the ends. A NaN has a magnitude above infinity's and must be tested apart (is_nan).
// This file is pasted into each .cu file that includes it (tinymed.kernels.cuda_source),
// so it has no include guard of its own.

__device__ __forceinline__ long long ordered(float x)
{
    const int bits = __float_as_int(x);
    const int magnitude = bits & 0x7fffffff;
    return bits < 0 ? -magnitude : magnitude;
}

__device__ __forceinline__ long long ordered(double x)
{
    const long long bits = __double_as_longlong(x);
    const long long magnitude = bits & 0x7fffffffffffffffLL;
    return bits < 0 ? -magnitude : magnitude;
}

// A NaN: all exponent bits set and a nonzero fraction, so a magnitude above infinity's.
__device__ __forceinline__ bool is_nan(float x)
{
    return (__float_as_int(x) & 0x7fffffff) > 0x7f800000;
}

__device__ __forceinline__ bool is_nan(double x)
{
    return (__double_as_longlong(x) & 0x7fffffffffffffffLL) > 0x7ff0000000000000LL;
}

// -inf, written as its float bits: there is no literal for it in CUDA C without a header.
// Converting the float -inf to double gives the double -inf.
template <typename T>
__device__ __forceinline__ T negative_infinity()
{
    return static_cast<T>(__int_as_float(0xff800000u));
}
