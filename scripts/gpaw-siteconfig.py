# GPAW build configuration used by scripts/install-gpaw (GPAW_CONFIG): serial GPAW (one process
# per Dask worker, one thread each) against Debian's libxc, OpenBLAS and FFTW. With a siteconfig
# GPAW adds no BLAS by itself, so OpenBLAS is listed here.
mpi = False
compiler = "g++"
fftw = True
scalapack = False
libraries = ["xc", "openblas", "fftw3"]
