/**
 * A plain-text table for the reports of the benchmark and the fault suite:
 * columns padded to their widest cell, a rule under the header. Not part of
 * the package's public API.
 */
export function table(rows: string[][], rightAligned: (column: number) => boolean): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row, i) => {
    const line = row.map((cell, column) => (rightAligned(column) && i > 0
      ? cell.padStart(widths[column]!)
      : cell.padEnd(widths[column]!))).join('  ').trimEnd();
    return i === 0 ? `${line}\n${'-'.repeat(line.length)}` : line;
  }).join('\n');
}
