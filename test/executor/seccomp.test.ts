// Docker's default seccomp profile, resolved for a container's capabilities, architecture and
// kernel as moby does (the runc tests check what it blocks in a real container).
import { describe, expect, it } from 'vitest';
import { defaultSeccompProfile } from '../../src/executor/seccomp.js';
import { DEFAULT_CAPABILITIES } from '../../src/executor/spec.js';

function rulesFor(profile: ReturnType<typeof defaultSeccompProfile>, name: string) {
  return profile.syscalls.filter((s) => s.names.includes(name));
}

describe('defaultSeccompProfile', () => {
  it("denies with EPERM by default and allows namespaces and mounts only with CAP_SYS_ADMIN", () => {
    const profile = defaultSeccompProfile(DEFAULT_CAPABILITIES, 'x64', '6.1.0');
    expect(profile).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] });
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'bpf', 'reboot', 'init_module', 'open_by_handle_at']) expect(rulesFor(profile, name)).toEqual([]);
    expect(rulesFor(profile, 'clone')).toEqual([{ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, op: 'SCMP_CMP_MASKED_EQ' }] }]);
    expect(rulesFor(profile, 'clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
    expect(rulesFor(profile, 'personality').map((r) => r.args)).toEqual([0, 8, 0x20000, 0x20008, 0xffffffff].map((value) => [{ index: 0, value, op: 'SCMP_CMP_EQ' }]));
    // Docker's default capabilities include CAP_SYS_CHROOT.
    expect(rulesFor(profile, 'chroot')).toHaveLength(1);

    const admin = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'], 'x64', '6.1.0');
    expect(rulesFor(admin, 'mount')).toHaveLength(1);
    expect(rulesFor(admin, 'clone')).toEqual([expect.not.objectContaining({ args: expect.anything() })]);
    expect(rulesFor(admin, 'clone3').map((r) => r.action)).toEqual(['SCMP_ACT_ALLOW']);
  });

  it('keeps only the rules of the architecture and kernel', () => {
    const arm = defaultSeccompProfile(DEFAULT_CAPABILITIES, 'arm64', '4.4.0');
    expect(arm.architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(rulesFor(arm, 'arch_prctl')).toEqual([]);
    expect(rulesFor(arm, 'set_tls')).toHaveLength(1);
    // ptrace without CAP_SYS_PTRACE needs kernel 4.8 (earlier ones let it bypass seccomp).
    expect(rulesFor(arm, 'ptrace')).toEqual([]);
    expect(rulesFor(defaultSeccompProfile(DEFAULT_CAPABILITIES, 'x64', '4.8.0'), 'ptrace')).toHaveLength(1);
  });
});
