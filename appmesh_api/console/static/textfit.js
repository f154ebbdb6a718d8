// Fitting a name into a box: measure it in the page's own font, break it after a space,
// "/", ".", "-", "_" or ":" onto as many lines as the box has, and end it in "…" only when
// even that is too short. Measuring (not counting characters) keeps wide names inside.

const BREAK_AFTER = /(?<=[ /.\-_:])/;
let context = null;
let family = "";

function width(text, font) {
  if (!context) {
    context = document.createElement("canvas").getContext("2d");
    family = getComputedStyle(document.body).fontFamily;
  }
  context.font = `${font} ${family}`;
  return context.measureText(text).width;
}

// The longest start of ``text`` that fits ``max`` pixels once "…" is added.
function cut(text, font, max) {
  let end = text.length;
  while (end > 1 && width(`${text.slice(0, end)}…`, font) > max) end--;
  return `${text.slice(0, end)}…`;
}

// Pieces of a line: the whole pieces after each separator, a piece wider than the line cut
// into the longest starts that fit.
function pieces(text, font, max) {
  return text.split(BREAK_AFTER).flatMap((piece) => {
    const out = [];
    while (width(piece, font) > max) {
      let end = piece.length - 1;
      while (end > 1 && width(piece.slice(0, end), font) > max) end--;
      out.push(piece.slice(0, end));
      piece = piece.slice(end);
    }
    return [...out, piece];
  });
}

// ``text`` as at most ``lines`` lines of at most ``max`` pixels. What follows the last "/"
// gets a line of its own when it fits one: X-Ray names an App Mesh proxy "mesh/node", and
// the node is what tells a mesh's proxies apart.
export function fitLines(text, font, max, lines) {
  if (width(text, font) <= max) return [text];
  const slash = text.lastIndexOf("/");
  const tail = text.slice(slash + 1);
  if (lines > 1 && slash > 0 && tail && width(tail, font) <= max) {
    return [...fitLines(text.slice(0, slash + 1), font, max, lines - 1), tail];
  }
  return wrap(text, font, max, lines);
}

function wrap(text, font, max, lines) {
  const found = [""];
  for (const piece of pieces(text, font, max)) {
    const last = found.length - 1;
    if (found[last] && width(found[last] + piece, font) > max) found.push(piece);
    else found[last] += piece;
  }
  if (found.length <= lines) return found;
  const kept = found.slice(0, lines);
  kept[lines - 1] = cut(found.slice(lines - 1).join(""), font, max);
  return kept;
}
