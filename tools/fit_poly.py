"""Fit the polynomial coefficients used in fastact/_math.py (run once; output pasted there).

Least squares on Chebyshev nodes with mpmath at 60 digits, relative error weighting: close to
minimax, and the ULP tests in tests/test_math.py check the result.

    python tools/fit_poly.py
"""

import mpmath as mp
import numpy as np

mp.mp.dps = 60


def fit(func, lo, hi, degree, nodes=400):
    """Coefficients c[0..degree] minimising sum ((p(z) - f(z)) / f(z))^2 on Chebyshev nodes."""
    zs = [lo + (hi - lo) * (1 - mp.cos(mp.pi * (k + 0.5) / nodes)) / 2 for k in range(nodes)]
    A = mp.matrix(nodes, degree + 1)
    b = mp.matrix(nodes, 1)
    for i, z in enumerate(zs):
        f = func(z)
        for j in range(degree + 1):
            A[i, j] = z**j / f
        b[i] = 1
    c = mp.lu_solve(A.T * A, A.T * b)
    err = max(abs((sum(c[j] * z**j for j in range(degree + 1)) - func(z)) / func(z)) for z in zs)
    return [c[j] for j in range(degree + 1)], err


def tanh_q(z):
    """tanh(a) = a + a*z*q(z), z = a*a: q(z) = (tanh(a)/a - 1)/z."""
    if z == 0:
        return mp.mpf(-1) / 3
    a = mp.sqrt(z)
    return (mp.tanh(a) / a - 1) / z


def expm1_q(r):
    """exp(r) - 1 = r + r^2 q(r): q(r) = (expm1(r) - r) / r^2."""
    if r == 0:
        return mp.mpf(1) / 2
    return (mp.expm1(r) - r) / (r * r)


def log1p_g(t):
    """g(e) = log1p(e) / e as a function of t = 2e - 1 in [-1, 1]."""
    e = (t + 1) / 2
    return mp.mpf(1) if e == 0 else mp.log1p(e) / e


def fit_float32(func, degree, nodes=200):
    """Coefficients c[0..degree] on t in [-1, 1] rounded to float32 one at a time (each refit
    after the ones before are fixed), c[0] kept as a float32 pair (hi, lo); returns
    (c0_hi, c0_lo, [c1..], max relative error)."""
    ts = [-mp.cos(mp.pi * (k + mp.mpf(1) / 2) / nodes) for k in range(nodes)]
    fs = [func(t) for t in ts]
    fixed: list = []
    c0_hi = c0_lo = mp.mpf(0)
    for j in range(degree + 1):
        m = degree + 1 - j
        A = mp.matrix(nodes, m)
        b = mp.matrix(nodes, 1)
        for i, (t, f) in enumerate(zip(ts, fs)):
            for k in range(m):
                A[i, k] = t ** (j + k) / f
            b[i] = (f - sum(c * t**k for k, c in enumerate(fixed))) / f
        c = mp.lu_solve(A.T * A, A.T * b)[0]
        if j == 0:
            c0_hi = mp.mpf(float(np.float32(float(c))))
            c0_lo = mp.mpf(float(np.float32(float(c - c0_hi))))
            fixed.append(c0_hi + c0_lo)
        else:
            fixed.append(mp.mpf(float(np.float32(float(c)))))
    err = max(abs((sum(c * t**k for k, c in enumerate(fixed)) - f) / f) for t, f in zip(ts, fs))
    return c0_hi, c0_lo, fixed[1:], err


ERFCX_K = 4  # s = 1 / (1 + a / ERFCX_K)
ERFCX_A_MAX = 28.5  # erfc(28.5) = 0 in float64 (below the smallest subnormal)


def erfcx_g(v, lo, hi):
    """exp(a^2) erfc(a) / s as a function of v in [-1, 1], s = lo + (v + 1) (hi - lo) / 2."""
    s = lo + (v + 1) * (hi - lo) / 2
    a = ERFCX_K * (1 / s - 1)
    return mp.erfc(a) * mp.exp(a * a) / s


if __name__ == "__main__":
    lo = mp.mpf(1) / (1 + mp.mpf(ERFCX_A_MAX) / ERFCX_K)
    hi = mp.mpf(1)
    c, err = fit(lambda v: erfcx_g(v, lo, hi), mp.mpf(-1), mp.mpf(1), 22)
    print(f"erfcx g(v), s in [{float(lo)!r}, 1], deg 22: max rel err {mp.nstr(err, 3)}")
    print("  (" + ", ".join(repr(float(v)) for v in c) + ")")
    half_ln2 = mp.log(2) / 2 * mp.mpf("1.0001")
    c, err = fit(expm1_q, -half_ln2, half_ln2, 10)
    print(f"exp f64 q deg 10: max rel err {mp.nstr(err, 3)}")
    print("  (" + ", ".join(repr(float(v)) for v in c) + ")")
    hi, lo, rest, err = fit_float32(log1p_g, 9)
    print(f"log1p_exp_neg f32 g deg 9, float32 coefficients: max rel err {mp.nstr(err, 3)}")
    print(f"  c0 = {float(hi)!r} + {float(lo)!r}; c9..c1 =")
    print("  (" + ", ".join(repr(float(v)) for v in rest[::-1]) + ")")
    for name, deg in (("f32", 5), ("f64", 11)):
        c, err = fit(tanh_q, mp.mpf(0), mp.mpf("0.3025"), deg)
        print(f"tanh {name} q deg {deg}: max rel err {mp.nstr(err, 3)}")
        print("  (" + ", ".join(repr(float(v)) for v in c) + ")")
