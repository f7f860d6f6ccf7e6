"""Which base a label set's "auto" picks, without loading a model (reft_core.bases is torch-free)."""
import subprocess
import sys

from reft_core.bases import BUNDLED, MINILM, MULTILINGUAL, available, choose_base, non_latin_share


def test_chinese_texts_pick_the_multilingual_base_and_english_ones_the_english_default():
    assert choose_base(["这家酒店的服务非常好，房间也很干净。", "快递三天才到，包装也破了"]) == MULTILINGUAL
    assert choose_base(["這家酒店的服務非常好", "物流太慢了！😡"]) == MULTILINGUAL  # traditional, emoji
    assert choose_base(["The parcel never arrived", "Refund the double charge"]) == MINILM
    assert choose_base(["Доставка опоздала на неделю"]) == MULTILINGUAL  # Cyrillic: not what MiniLM reads
    assert choose_base(["Great café in São Paulo", "naïve résumé"]) == MINILM  # accents are still Latin
    assert choose_base(["The parcel never arrived"], english=MULTILINGUAL) == MULTILINGUAL


def test_mostly_latin_with_a_few_chinese_words_stays_english():
    texts = ["Order 12345 from the Shenzhen 工厂 arrived broken", "Please refund my order", "Where is my parcel"]
    assert non_latin_share(texts) < 0.5 and choose_base(texts) == MINILM


def test_a_local_directory_joins_the_bundled_bases_under_its_folder_name():
    assert set(available(MINILM)) == set(BUNDLED)
    assert available("/models/my-bert") == {**{n: n for n in BUNDLED}, "my-bert": "/models/my-bert"}


def test_the_registry_imports_without_torch():
    code = "import sys, reft_core.bases; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
