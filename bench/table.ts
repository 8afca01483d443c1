/**
 * Plain-text table formatting for the benchmark report: a pipe table that
 * reads well in a terminal and pastes into Markdown unchanged.
 */

/** Fixed-point number, or an em dash for a missing measurement. */
export function num(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
}

/** A ratio such as "3.4×", or an em dash when either side is missing. */
export function ratio(numerator: number | null | undefined, denominator: number | null | undefined): string {
  if (numerator == null || denominator == null || !(denominator > 0)) {
    return '—';
  }
  return `${(numerator / denominator).toFixed(2)}×`;
}

/**
 * Format rows under headers. The first column is left-aligned (labels), the
 * others right-aligned (numbers), so decimal columns line up.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    '| ' +
    widths
      .map((width, column) => {
        const cell = cells[column] ?? '';
        return column === 0 ? cell.padEnd(width) : cell.padStart(width);
      })
      .join(' | ') +
    ' |';
  // Markdown alignment row: ':' on the right marks right-aligned columns.
  const rule = '|' + widths.map((width, column) => (column === 0 ? '-'.repeat(width + 2) : '-'.repeat(width + 1) + ':')).join('|') + '|';
  return [line(headers), rule, ...rows.map(line)].join('\n');
}
