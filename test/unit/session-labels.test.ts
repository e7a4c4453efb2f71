import { describe, expect, test } from "bun:test";
import {
  LABEL_MANAGED_BY,
  LABEL_OWNER,
  LABEL_ROLE,
  LABEL_SESSION,
  isDnsLabel,
  isLabelValue,
  isSessionId,
  labelSafe,
  leaseName,
  newSessionId,
  objectName,
  sessionLabels,
} from "../../core/session/labels.ts";

describe("session ids", () => {
  test("are short DNS labels starting with a letter", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = newSessionId();
      expect(id).toHaveLength(8);
      expect(isDnsLabel(id)).toBe(true);
      expect(isLabelValue(id)).toBe(true);
      expect(isSessionId(id)).toBe(true);
      expect(id[0]).toMatch(/[a-z]/);
      ids.add(id);
    }
    // 36^7*26 possibilities: 2000 draws colliding would mean a broken generator.
    expect(ids.size).toBe(2000);
  });

  test("map random bytes onto the alphabet", () => {
    expect(newSessionId(() => new Uint8Array([0, 0, 25, 26, 35, 36, 61, 255]))).toBe("aaz09azd");
    expect(newSessionId(() => new Uint8Array([26, 1, 2, 3, 4, 5, 6, 7]))).toBe("abcdefgh");
  });

  test("reject what is not an id", () => {
    for (const bad of ["", "1abc", "ABCDEFGH", "ab-cd", "abc", "a".repeat(17)]) expect(isSessionId(bad)).toBe(false);
  });
});

describe("label values", () => {
  test("owner becomes a valid label value", () => {
    expect(labelSafe("alice@laptop")).toBe("alice-laptop");
    expect(labelSafe("DOMAIN\\bob@host.local")).toBe("DOMAIN-bob-host.local");
    expect(labelSafe("@@@")).toBe("unknown");
    expect(labelSafe("-._x_.-")).toBe("x");
  });

  test("long owners are cut to 63 and stay distinct", () => {
    const a = labelSafe(`${"x".repeat(80)}@host-a`);
    const b = labelSafe(`${"x".repeat(80)}@host-b`);
    expect(a.length).toBeLessThanOrEqual(63);
    expect(isLabelValue(a)).toBe(true);
    expect(a).not.toBe(b);
  });

  test("the label set uses the ktctl.io keys with valid values", () => {
    const labels = sessionLabels("abcd1234", "alice@laptop", "Exchange Echo");
    expect(labels).toEqual({
      [LABEL_MANAGED_BY]: "ktctl",
      [LABEL_SESSION]: "abcd1234",
      [LABEL_OWNER]: "alice-laptop",
      [LABEL_ROLE]: "exchange-echo",
    });
    for (const value of Object.values(labels)) expect(isLabelValue(value)).toBe(true);
    expect(sessionLabels("abcd1234", "alice")).not.toHaveProperty(LABEL_ROLE);
  });
});

describe("object names", () => {
  test("ktctl-<id>-<role>", () => {
    expect(objectName("abcd1234", "forward")).toBe("ktctl-abcd1234-forward");
    expect(objectName("abcd1234", "Exchange_Echo")).toBe("ktctl-abcd1234-exchange-echo");
    expect(leaseName("abcd1234")).toBe("ktctl-abcd1234");
  });

  test("long roles fit in 63 chars, stay valid and distinct", () => {
    const a = objectName("abcd1234", `exchange-${"very-long-service-name-".repeat(4)}a`);
    const b = objectName("abcd1234", `exchange-${"very-long-service-name-".repeat(4)}b`);
    for (const name of [a, b]) {
      expect(name.length).toBeLessThanOrEqual(63);
      expect(isDnsLabel(name)).toBe(true);
      expect(name.startsWith("ktctl-abcd1234-exchange-")).toBe(true);
    }
    expect(a).not.toBe(b);
  });

  test("a role of exactly the room left is kept whole", () => {
    const role = "r".repeat(63 - "ktctl-abcd1234-".length);
    expect(objectName("abcd1234", role)).toBe(`ktctl-abcd1234-${role}`);
    expect(objectName("abcd1234", `${role}x`)).not.toContain(`${role}x`);
  });
});
