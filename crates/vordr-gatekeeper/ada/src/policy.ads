--  The node's security policy: the Kubernetes Pod Security Standards
--  (v1.35) as far as a runtime can see them, plus Vordr's own rules. Every
--  pod and container is reduced (in Rust, from the OCI spec that will run)
--  to a Spec_Input of bounded, explicit values and judged by Validate.
--  Each rule is an expression function; the rules are grouped as the
--  standard groups its controls (Baseline, Restricted) and Vordr's own;
--  each group's judge states in its postcondition that it allows exactly
--  what its rules allow, and Validate's postcondition that an Allowed
--  verdict is the conjunction of all of them. The unit is within the SPARK
--  subset: no run-time error can occur.
pragma SPARK_Mode (On);

package Policy is

   type Profile_Kind is (Privileged, Baseline, Restricted);

   --  What the pod's namespace may do with the network: Restricted and
   --  Admin add NET_ADMIN to the capabilities allowed, Admin the host's
   --  network as well.
   type Network_Mode is (Network_Default, Network_Restricted, Network_Admin);

   type Userns_Mode is (Userns_None, Userns_Pod);

   --  Unconfined: the process runs without a seccomp filter.
   type Seccomp_Mode is (Seccomp_Runtime_Default, Seccomp_Localhost, Seccomp_Unconfined);

   --  The AppArmor profile the process runs under; None: not asked for.
   type Apparmor_Mode is
     (Apparmor_None, Apparmor_Runtime_Default, Apparmor_Localhost, Apparmor_Unconfined);

   --  The type of the process's SELinux label; Other: any type the
   --  standard does not list.
   type Selinux_Type is
     (Selinux_None, Container_T, Container_Init_T, Container_Kvm_T, Container_Engine_T,
      Selinux_Other);

   --  Linux capabilities by number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE
   --  = 40; the kernel reserves up to 63).
   type Capability is range 0 .. 63;
   type Cap_Set is array (Capability) of Boolean;

   CAP_CHOWN            : constant Capability := 0;
   CAP_DAC_OVERRIDE     : constant Capability := 1;
   CAP_FOWNER           : constant Capability := 3;
   CAP_FSETID           : constant Capability := 4;
   CAP_KILL             : constant Capability := 5;
   CAP_SETGID           : constant Capability := 6;
   CAP_SETUID           : constant Capability := 7;
   CAP_SETPCAP          : constant Capability := 8;
   CAP_NET_BIND_SERVICE : constant Capability := 10;
   CAP_NET_ADMIN        : constant Capability := 12;
   CAP_NET_RAW          : constant Capability := 13;
   CAP_SYS_CHROOT       : constant Capability := 18;
   CAP_MKNOD            : constant Capability := 27;
   CAP_AUDIT_WRITE      : constant Capability := 29;
   CAP_SETFCAP          : constant Capability := 31;

   --  The 13 capabilities the Baseline standard lets a container add.
   Baseline_Caps : constant Cap_Set :=
     (CAP_AUDIT_WRITE | CAP_CHOWN | CAP_DAC_OVERRIDE | CAP_FOWNER | CAP_FSETID
      | CAP_KILL | CAP_MKNOD | CAP_NET_BIND_SERVICE | CAP_SETFCAP | CAP_SETGID
      | CAP_SETPCAP | CAP_SETUID | CAP_SYS_CHROOT => True,
      others => False);

   --  The runtime's default set: the Baseline list and NET_RAW (containerd's
   --  14). A container may hold them without adding them.
   Default_Caps : constant Cap_Set :=
     (CAP_AUDIT_WRITE | CAP_CHOWN | CAP_DAC_OVERRIDE | CAP_FOWNER | CAP_FSETID
      | CAP_KILL | CAP_MKNOD | CAP_NET_BIND_SERVICE | CAP_SETFCAP | CAP_SETGID
      | CAP_SETPCAP | CAP_SETUID | CAP_SYS_CHROOT | CAP_NET_RAW => True,
      others => False);

   type UID_Value is range 0 .. 2**32 - 1;

   type Spec_Input is record
      Profile              : Profile_Kind;
      --  The namespace may run privileged containers: privileged mode and
      --  what comes with it (every capability, host devices, an unmasked
      --  /proc, no seccomp filter).
      Namespace_Privileged : Boolean;
      Network              : Network_Mode;
      --  The node's kubelet runs with seccompDefault: an Unconfined profile
      --  was asked for explicitly, so Baseline refuses it.
      Refuse_Unconfined    : Boolean;
      Privileged           : Boolean;
      --  Every capability the process holds in any of its sets.
      Held                 : Cap_Set;
      --  The capabilities the spec asked to add (ALL: every one).
      Added                : Cap_Set;
      --  The effective UID, when known; unknown counts as root.
      UID_Known            : Boolean;
      UID                  : UID_Value;
      --  A user namespace of the pod's that does not map host root.
      Userns               : Userns_Mode;
      --  Some ID mapping gives the container the host's UID or GID 0.
      Maps_Host_Root       : Boolean;
      Host_Network         : Boolean;
      Host_PID             : Boolean;
      Host_IPC             : Boolean;
      No_New_Privs         : Boolean;
      Seccomp              : Seccomp_Mode;
      Apparmor             : Apparmor_Mode;
      Selinux              : Selinux_Type;
      --  A user or role in the SELinux label.
      Selinux_User_Role    : Boolean;
      --  /proc without the default masked and read-only paths.
      Proc_Unmasked        : Boolean;
      --  A bind mount from outside kubelet's directory for the pod.
      Host_Path            : Boolean;
      Host_Port            : Boolean;
      Unsafe_Sysctl        : Boolean;
      --  Device nodes from the host.
      Devices              : Boolean;
      --  A resources.unified key outside the cgroup v2 controller files.
      Bad_Unified_Key      : Boolean;
      --  The container's log file outside kubelet's log directory.
      Log_Outside          : Boolean;
   end record;

   --  The C side never hands over a UID it does not know, nor a user
   --  namespace that is not one.
   function Well_Formed (S : Spec_Input) return Boolean is
     ((S.UID_Known or else S.UID = 0)
      and then (if S.Maps_Host_Root then S.Userns = Userns_None));

   --  0 means allowed; 1 .. 17 name the rule that denied.
   Last_Rule : constant := 17;
   type Rule_Id is range 0 .. Last_Rule;
   Allowed_Verdict : constant Rule_Id := 0;

   --  Whether NET_ADMIN joins the capabilities allowed.
   function Net_Admin_Allowed (S : Spec_Input; C : Capability) return Boolean is
     (C = CAP_NET_ADMIN and then S.Network /= Network_Default);

   --  Every capability in Set is one Allowed lets S have.
   function Within
     (S : Spec_Input; Set : Cap_Set; Allowed : Cap_Set) return Boolean is
     (for all C in Capability =>
        (if Set (C) then Allowed (C) or else Net_Admin_Allowed (S, C)));

   --  Restricted: at most NET_BIND_SERVICE (and NET_ADMIN by network mode).
   Restricted_Caps : constant Cap_Set := (CAP_NET_BIND_SERVICE => True, others => False);

   function Enforced (S : Spec_Input) return Boolean is (S.Profile /= Privileged);

   --  What a privileged container brings with it, where the namespace may
   --  run one.
   function Privilege_Waived (S : Spec_Input) return Boolean is
     (not Enforced (S) or else S.Namespace_Privileged);

   function Runs_As_Root (S : Spec_Input) return Boolean is
     (not S.UID_Known or else S.UID = 0);

   ---------------------------------------------------------------------
   --  Baseline (enforced by Baseline and Restricted).

   --  Rule 1: Privileged Containers.
   function Rule_1 (S : Spec_Input) return Boolean is
     (Privilege_Waived (S) or else not S.Privileged);

   --  Rule 2: Capabilities: nothing added beyond the Baseline list, nothing
   --  held beyond the runtime's default set.
   function Rule_2 (S : Spec_Input) return Boolean is
     (Privilege_Waived (S)
      or else (Within (S, S.Added, Baseline_Caps) and then Within (S, S.Held, Default_Caps)));

   --  Rule 4: Host Namespaces (the host's network with network mode Admin).
   function Rule_4 (S : Spec_Input) return Boolean is
     (not Enforced (S)
      or else (not S.Host_PID and then not S.Host_IPC
               and then (not S.Host_Network or else S.Network = Network_Admin)));

   --  Rule 5: HostPath Volumes.
   function Rule_5 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else not S.Host_Path);

   --  Rule 6: Host Ports.
   function Rule_6 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else not S.Host_Port);

   --  Rule 7: AppArmor: never Unconfined.
   function Rule_7 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else S.Apparmor /= Apparmor_Unconfined);

   --  Rule 8: SELinux: a listed type, no user, no role.
   function Rule_8 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else (S.Selinux /= Selinux_Other and then not S.Selinux_User_Role));

   --  Rule 9: /proc Mount Type: Default.
   function Rule_9 (S : Spec_Input) return Boolean is
     (Privilege_Waived (S) or else not S.Proc_Unmasked);

   --  Rule 10: Seccomp: Restricted needs a filter; Baseline refuses
   --  Unconfined where kubelet only sends it when asked.
   function Rule_10 (S : Spec_Input) return Boolean is
     (not Enforced (S)
      or else S.Seccomp /= Seccomp_Unconfined
      or else (S.Profile = Baseline
               and then (not S.Refuse_Unconfined
                         or else (S.Privileged and then S.Namespace_Privileged))));

   --  Rule 11: Sysctls: only the safe set.
   function Rule_11 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else not S.Unsafe_Sysctl);

   function Baseline_Secure (S : Spec_Input) return Boolean is
     (Rule_1 (S) and then Rule_2 (S) and then Rule_4 (S) and then Rule_5 (S)
      and then Rule_6 (S) and then Rule_7 (S) and then Rule_8 (S) and then Rule_9 (S)
      and then Rule_10 (S) and then Rule_11 (S));

   ---------------------------------------------------------------------
   --  Restricted.

   --  Rule 3: Capabilities: ALL dropped, at most NET_BIND_SERVICE.
   function Rule_3 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted
      or else S.Namespace_Privileged
      or else (Within (S, S.Added, Restricted_Caps)
               and then Within (S, S.Held, Restricted_Caps)));

   --  Rule 12: Privilege Escalation: no_new_privs.
   function Rule_12 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted or else S.No_New_Privs);

   --  Rule 13: Running as Non-root user, unless in a user namespace.
   function Rule_13 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted or else not Runs_As_Root (S) or else S.Userns = Userns_Pod);

   function Restricted_Secure (S : Spec_Input) return Boolean is
     (Rule_3 (S) and then Rule_12 (S) and then Rule_13 (S));

   ---------------------------------------------------------------------
   --  Vordr's own rules.

   --  Rule 14: devices from the host only where privileged pods may run.
   function Rule_14 (S : Spec_Input) return Boolean is
     (Privilege_Waived (S) or else not S.Devices);

   --  Rule 15: resources.unified names cgroup v2 controller files only
   --  (every profile: any other key writes where it should not).
   function Rule_15 (S : Spec_Input) return Boolean is (not S.Bad_Unified_Key);

   --  Rule 16: a user namespace must not map the host's root.
   function Rule_16 (S : Spec_Input) return Boolean is
     (not Enforced (S) or else not S.Maps_Host_Root);

   --  Rule 17: logs only under kubelet's log directory (every profile: the
   --  shim writes the file as root).
   function Rule_17 (S : Spec_Input) return Boolean is (not S.Log_Outside);

   function Vordr_Secure (S : Spec_Input) return Boolean is
     (Rule_14 (S) and then Rule_15 (S) and then Rule_16 (S) and then Rule_17 (S));

   function Secure (S : Spec_Input) return Boolean is
     (Baseline_Secure (S) and then Restricted_Secure (S) and then Vordr_Secure (S));

   --  The first Baseline rule S breaks, or Allowed_Verdict.
   function Judge_Baseline (S : Spec_Input) return Rule_Id with
     Pre  => Well_Formed (S),
     Post => (Judge_Baseline'Result = Allowed_Verdict) = Baseline_Secure (S)
       and then Judge_Baseline'Result in 0 | 1 | 2 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11
       and then (if Judge_Baseline'Result = 1 then not Rule_1 (S))
       and then (if Judge_Baseline'Result = 2 then not Rule_2 (S))
       and then (if Judge_Baseline'Result = 4 then not Rule_4 (S))
       and then (if Judge_Baseline'Result = 5 then not Rule_5 (S))
       and then (if Judge_Baseline'Result = 6 then not Rule_6 (S))
       and then (if Judge_Baseline'Result = 7 then not Rule_7 (S))
       and then (if Judge_Baseline'Result = 8 then not Rule_8 (S))
       and then (if Judge_Baseline'Result = 9 then not Rule_9 (S))
       and then (if Judge_Baseline'Result = 10 then not Rule_10 (S))
       and then (if Judge_Baseline'Result = 11 then not Rule_11 (S));

   --  The first Restricted rule S breaks, or Allowed_Verdict.
   function Judge_Restricted (S : Spec_Input) return Rule_Id with
     Pre  => Well_Formed (S),
     Post => (Judge_Restricted'Result = Allowed_Verdict) = Restricted_Secure (S)
       and then Judge_Restricted'Result in 0 | 3 | 12 | 13
       and then (if Judge_Restricted'Result = 3 then not Rule_3 (S))
       and then (if Judge_Restricted'Result = 12 then not Rule_12 (S))
       and then (if Judge_Restricted'Result = 13 then not Rule_13 (S));

   --  The first of Vordr's rules S breaks, or Allowed_Verdict.
   function Judge_Vordr (S : Spec_Input) return Rule_Id with
     Pre  => Well_Formed (S),
     Post => (Judge_Vordr'Result = Allowed_Verdict) = Vordr_Secure (S)
       and then Judge_Vordr'Result in 0 | 14 | 15 | 16 | 17
       and then (if Judge_Vordr'Result = 14 then not Rule_14 (S))
       and then (if Judge_Vordr'Result = 15 then not Rule_15 (S))
       and then (if Judge_Vordr'Result = 16 then not Rule_16 (S))
       and then (if Judge_Vordr'Result = 17 then not Rule_17 (S));

   --  The first rule S breaks (Baseline, then Restricted, then Vordr's),
   --  or Allowed_Verdict.
   function Validate (S : Spec_Input) return Rule_Id with
     Pre  => Well_Formed (S),
     Post => (Validate'Result = Allowed_Verdict) = Secure (S)
       and then (if Validate'Result /= Allowed_Verdict and then not Baseline_Secure (S)
                 then Validate'Result = Judge_Baseline (S))
       and then (if Validate'Result /= Allowed_Verdict and then Baseline_Secure (S)
                   and then not Restricted_Secure (S)
                 then Validate'Result = Judge_Restricted (S));

end Policy;
