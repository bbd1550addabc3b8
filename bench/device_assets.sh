# Sourced by the device scripts: the training assets travel as one archive, .train-assets.tar.xz
# (11.6 MB; the folder is 26.2 MB, which with the tracked files would pass the device tool's
# 64 MiB per call), and are unpacked once per machine next to where they are read.
QUIRE_TRAIN_ASSETS="${QUIRE_TRAIN_ASSETS:-.train-assets}"
if [ ! -d "$QUIRE_TRAIN_ASSETS/fonts" ] && [ -f "$QUIRE_TRAIN_ASSETS.tar.xz" ]; then
  mkdir -p "$QUIRE_TRAIN_ASSETS" && tar -C "$QUIRE_TRAIN_ASSETS" -xJf "$QUIRE_TRAIN_ASSETS.tar.xz"
fi
export QUIRE_TRAIN_ASSETS
