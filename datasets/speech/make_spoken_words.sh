#!/bin/sh
# Generate a labeled spoken-digit dataset with espeak-ng: train/ and test/ with one subfolder per
# digit (zero..nine), where the test voices (accent + voice variant) never occur in train/, plus
# an unlabeled/ folder of spoken sentences in the training voices.
#
# Usage: make_spoken_words.sh OUT_DIR [small|full]
#   small: 8 training voices x 1 take, 4 test voices, a few sentences, 8 kHz (the committed default)
#   full:  20 training voices x 3 takes (speed/pitch), 6 test voices x 2 takes, 16 kHz
# Needs espeak-ng and sox (Debian/Ubuntu: apt-get install espeak-ng sox).
set -eu
out=${1:?usage: make_spoken_words.sh OUT_DIR [small|full]}
size=${2:-full}
for tool in espeak-ng sox; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is missing; install it with: apt-get install espeak-ng sox" >&2
        exit 1
    fi
done

words="zero one two three four five six seven eight nine"
if [ "$size" = small ]; then
    rate=8000
    train_voices="en+m1 en+f2 en-us+m1 en-us+f2 en-029+m1 en-029+f2 en-gb-scotland+m1 en-gb-scotland+f2"
    test_voices="en-gb-x-rp+m7 en-us+f4 en+m5 en-029+f5"
    takes_train="165:50"
    takes_test="165:50"
    sentences=1
else
    rate=16000
    train_voices=""
    for a in en en-us en-029 en-gb-scotland; do
        for v in m1 m2 m3 f1 f2; do train_voices="$train_voices $a+$v"; done
    done
    test_voices="en-gb-x-rp+m7 en-gb-x-rp+f4 en-us-nyc+m6 en-us-nyc+f5 en+m7 en-029+f4"
    takes_train="140:40 170:55 200:70"
    takes_test="150:45 185:60"
    sentences=10
fi

# Trim leading/trailing silence, convert to mono 16-bit at $rate.
render() { # voice speed pitch text file
    tmp="$5.raw.wav"
    espeak-ng -v "$1" -s "$2" -p "$3" -w "$tmp" "$4"
    sox "$tmp" -r "$rate" -b 16 -c 1 "$5" norm -1 silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
    rm -f "$tmp"
}

make_split() { # split voices takes
    for w in $words; do mkdir -p "$out/$1/$w"; done
    for voice in $2; do
        for take in $3; do
            s=${take%%:*}; p=${take##*:}
            for w in $words; do
                render "$voice" "$s" "$p" "$w" "$out/$1/$w/$(echo "$voice" | tr '+' '_')-s$s-p$p.wav"
            done
        done
    done
}

make_split train "$train_voices" "$takes_train"
make_split test "$test_voices" "$takes_test"

mkdir -p "$out/unlabeled"
i=0
for voice in $train_voices; do
    n=0
    while read -r line; do
        n=$((n + 1))
        [ "$n" -gt "$sentences" ] && break
        i=$((i + 1))
        render "$voice" 160 50 "$line" "$out/unlabeled/$(echo "$voice" | tr '+' '_')-$n.wav"
    done <<'TEXT'
The quick brown fox jumps over the lazy dog near the river bank.
Please call me back at four five six, seven eight nine, zero one two.
Twenty three people waited for the early train on a cold morning.
She counted the boxes twice and found nine more than yesterday.
A bright light shone through the window while the kettle began to boil.
My phone number ends in three, three, eight, and then two.
We will meet at half past seven in front of the old library.
Seventeen birds sat on the fence and sang until the sun went down.
The room was quiet except for the ticking of a large clock.
Every evening he walks five kilometres along the canal.
Open the door, turn left, and take the second staircase to the top floor.
Fourteen, fifteen, sixteen: the children shouted the numbers as they ran.
The weather report promised rain, but the afternoon stayed dry and warm.
Put the green bottle on the shelf beside the six red cups.
Our flight leaves at eleven forty and arrives just after two.
He wrote the answer on the board and underlined it twice.
Sixty eight thousand tickets were sold in less than an hour.
The cat jumped onto the table and knocked over a glass of milk.
Remember to save your work before you switch off the computer.
One by one the lamps came on along the empty street.
TEXT
done
echo "wrote $(find "$out" -name '*.wav' | wc -l) clips to $out"
