// Llama-2's token ids for OpenVLA-OFT prompts, by llama-tokenizer-js (Llama-2's vocabulary and
// merges), and the part of that vocabulary the prompts can reach, for tests/test_prompt_ids.py.
// Regenerate: cd DIR && npm install llama-tokenizer-js@1.2.2 && cp THIS_FILE DIR/ &&
//   node DIR/llama2_prompt_ids.mjs > tests/assets/llama2_prompt_ids.json
import llamaTokenizer from "llama-tokenizer-js";

const INSTRUCTIONS = [
  "pick up the black bowl between the plate and the ramekin and place it on the plate",
  "Put the Cream Cheese in the Bowl.",
  "open the top drawer, then put the bowl inside!",
  "stack 3 cubes; move 12.5 cm left (x2)",
  "turn on the stove ",
  "  put both moka pots on the stove  ",
  "place the café au lait mug on the plate",
  "hand over the 🍎 to the left arm",
  "TRANSFER THE CUBE",
  "pour: 'milk' -> \"cup\" & stir?",
];
// OFT's evaluation prompt (Python: task_label.lower()); its training prompt ends "Out: "
// followed by the action tokens, whose leading space is Llama's lone "▁" (29871).
const prompt = (text) => `In: What action should the robot take to ${text}?\nOut:`;

const cases = INSTRUCTIONS.map((instruction) => {
  const lower = instruction.toLowerCase();
  return {
    instruction,
    lower,
    ids: llamaTokenizer.encode(prompt(lower)),
    ids_with_trailing_space: llamaTokenizer.encode(prompt(lower) + " "),
  };
});

// The vocabulary these prompts can reach: BPE only ever builds tokens that are substrings of
// the (space-marked) text, so those, the byte-fallback tokens and the specials, with the merges
// among them in Llama's priority order, tokenize these prompts exactly as the whole vocabulary.
const texts = cases.map((c) => (" " + prompt(c.lower) + " ").replaceAll(" ", "▁"));
const vocab = {};
llamaTokenizer.vocabById.forEach((token, id) => {
  if (id < 259 || texts.some((text) => text.includes(token))) vocab[token] = id;
});
const merges = [...llamaTokenizer.merges.entries()]
  .sort((a, b) => a[1] - b[1])
  .map(([pair]) => pair)
  .filter((pair) => {
    const [a, b] = pair.split(" ");
    return a in vocab && b in vocab && a + b in vocab;
  });
console.log(JSON.stringify({
  generator: "llama-tokenizer-js 1.2.2 (tests/assets/llama2_prompt_ids.mjs)",
  cases, vocab, merges,
}));
