#!/usr/bin/env bash
# Fill the texture cache of the synthetic multi-view generator with natural photographs taken
# from Debian packages (apt-get download + dpkg -x: nothing is installed, no root needed once
# the apt lists exist). Only natural photographs are kept; the packages' abstract and drawn
# wallpapers, text and calibration images, and the stereo pairs used for evaluation are not.
#
#   scripts/fetch_textures.sh        # into ${PARAHYDRA_TEXTURES:-$HOME/.cache/parahydra/textures}
#
# Idempotent and quiet: returns at once when the cache is complete. Licences: mate-backgrounds
# and plasma-workspace-wallpapers GPL-2+, opencv-doc sample data (see the packages' copyright).
set -euo pipefail

dest="${PARAHYDRA_TEXTURES:-$HOME/.cache/parahydra/textures}"
stamp="$dest/.complete-v1"
[[ -f "$stamp" ]] && exit 0

mate_nature=(Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings
             Wood YellowFlower)
plasma_photos=(BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite
               OneStandsOut Path summer_1am)
opencv_photos=(aero1.jpg aero3.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg
               chicky_512.png ela_original.jpg fruits.jpg graf1.png home.jpg leuvenA.jpg
               messi5.jpg orange.jpg smarties.png squirrel_cls.jpg stuff.jpg)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -qq mate-backgrounds plasma-workspace-wallpapers opencv-doc >apt.log 2>&1; then
    echo "fetch_textures: apt-get download failed (are the apt lists present? try 'apt-get update'):" >&2
    cat apt.log >&2
    exit 1
fi
for deb in ./*.deb; do dpkg -x "$deb" root; done
mkdir -p stage/mate stage/plasma stage/opencv

for name in "${mate_nature[@]}"; do
    src="root/usr/share/backgrounds/mate/nature/$name.jpg"
    if [[ -f "$src" ]]; then cp "$src" stage/mate/; fi
done
for name in "${plasma_photos[@]}"; do
    dir="root/usr/share/wallpapers/$name/contents/images"
    [[ -d "$dir" ]] || continue
    # One resolution per wallpaper: 1920x1200 when shipped, else the largest file.
    src="$dir/1920x1200.jpg"
    [[ -f "$src" ]] || src="$(ls -S "$dir"/*.jpg | sed -n 1p)"
    cp "$src" "stage/plasma/$name.jpg"
done
for name in "${opencv_photos[@]}"; do
    src="root/usr/share/doc/opencv-doc/examples/data/$name"
    if [[ -f "$src" ]]; then cp "$src" stage/opencv/; fi
done

count="$(find stage -type f | wc -l)"
if (( count == 0 )); then
    echo "fetch_textures: the packages held none of the expected photographs" >&2
    exit 1
fi
mkdir -p "$dest"
for sub in mate plasma opencv; do
    rm -rf "${dest:?}/$sub"
    mv "stage/$sub" "$dest/$sub"
done
touch "$stamp"
