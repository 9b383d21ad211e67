--  The node's security policy. Every pod and container spec is reduced to a
--  Spec_Input of bounded, explicit values and judged by Validate. Each rule
--  is an expression function; the security predicate is their conjunction,
--  and the postcondition of Validate states that an Allowed verdict implies
--  it. The unit is within the SPARK subset: no run-time error can occur.
pragma SPARK_Mode (On);

package Policy is

   type Profile_Kind is (Privileged, Baseline, Restricted);

   --  What the pod's namespace may do with the network.
   type Network_Mode is (Network_Default, Network_Restricted, Network_Admin);

   type Userns_Mode is (Userns_None, Userns_Pod);

   type Seccomp_Mode is (Seccomp_Runtime_Default, Seccomp_Localhost, Seccomp_Unconfined);

   --  The capabilities the rules judge. No other capability decides a
   --  verdict, so the input names only these.
   type Cap_Class is (Cap_Sys_Admin, Cap_Net_Admin);
   type Cap_Set is array (Cap_Class) of Boolean;

   type UID_Value is range 0 .. 2**32 - 1;

   type Spec_Input is record
      Profile              : Profile_Kind;
      --  The profile lets this namespace run privileged pods.
      Namespace_Privileged : Boolean;
      Network              : Network_Mode;
      Privileged           : Boolean;
      --  The effective UID (asked for, or the image's default user) when it
      --  could be determined before the container exists; unknown counts
      --  as root.
      UID_Known            : Boolean;
      UID                  : UID_Value;
      Userns               : Userns_Mode;
      --  Capabilities as the CRI lists them: ALL in the added list grants
      --  every capability, ALL in the dropped list removes them, then the
      --  named ones are added and dropped (containerd's order).
      Add_All              : Boolean;
      Cap_Add              : Cap_Set;
      Drop_All             : Boolean;
      Cap_Drop             : Cap_Set;
      Host_Network         : Boolean;
      Host_PID             : Boolean;
      Host_IPC             : Boolean;
      No_New_Privs         : Boolean;
      Seccomp              : Seccomp_Mode;
      Read_Only_Rootfs     : Boolean;
      --  A host-path mount of /, /proc, /sys, /dev, /etc, /var/run or
      --  Vordr's own socket or root.
      Sensitive_Mount      : Boolean;
      Unsafe_Sysctl        : Boolean;
   end record;

   --  0 means allowed; 1 .. 9 name the rule that denied.
   type Rule_Id is range 0 .. 9;
   Allowed_Verdict : constant Rule_Id := 0;

   --  Whether the process holds capability C: a privileged container holds
   --  every capability; the default set holds neither of Cap_Class.
   function Has_Cap (S : Spec_Input; C : Cap_Class) return Boolean is
     (S.Privileged
      or else (not S.Cap_Drop (C)
               and then (S.Cap_Add (C) or else (S.Add_All and then not S.Drop_All))));

   function Runs_As_Root (S : Spec_Input) return Boolean is
     (not S.UID_Known or else S.UID = 0);

   --  Rule 1: privileged mode and SYS_ADMIN only where the namespace may
   --  run privileged.
   function Rule_1 (S : Spec_Input) return Boolean is
     (S.Profile = Privileged
      or else S.Namespace_Privileged
      or else (not S.Privileged and then not Has_Cap (S, Cap_Sys_Admin)));

   --  Rule 2: UID 0 needs a user namespace unless the profile allows root.
   function Rule_2 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted
      or else not Runs_As_Root (S)
      or else S.Userns = Userns_Pod);

   --  Rule 3: NET_ADMIN needs the Restricted or Admin network mode; host
   --  network needs Admin.
   function Rule_3 (S : Spec_Input) return Boolean is
     (S.Profile = Privileged
      or else ((not Has_Cap (S, Cap_Net_Admin) or else S.Network /= Network_Default)
               and then (not S.Host_Network or else S.Network = Network_Admin)));

   --  Rule 4: privilege escalation only inside a user namespace.
   function Rule_4 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted
      or else S.No_New_Privs
      or else S.Userns = Userns_Pod);

   --  Rule 5: host PID and IPC.
   function Rule_5 (S : Spec_Input) return Boolean is
     (S.Profile = Privileged or else (not S.Host_PID and then not S.Host_IPC));

   --  Rule 6: host-path mounts of sensitive paths.
   function Rule_6 (S : Spec_Input) return Boolean is
     (S.Profile = Privileged or else not S.Sensitive_Mount);

   --  Rule 7: Unconfined seccomp.
   function Rule_7 (S : Spec_Input) return Boolean is
     (S.Profile /= Restricted or else S.Seccomp /= Seccomp_Unconfined);

   --  Rule 8: unsafe sysctls.
   function Rule_8 (S : Spec_Input) return Boolean is
     (S.Profile = Privileged or else not S.Unsafe_Sysctl);

   function Secure (S : Spec_Input) return Boolean is
     (Rule_1 (S) and then Rule_2 (S) and then Rule_3 (S) and then Rule_4 (S)
      and then Rule_5 (S) and then Rule_6 (S) and then Rule_7 (S)
      and then Rule_8 (S));

   --  The first rule S breaks, or Allowed_Verdict.
   function Validate (S : Spec_Input) return Rule_Id with
     Post => (Validate'Result = Allowed_Verdict) = Secure (S)
       and then (if Validate'Result = 1 then not Rule_1 (S))
       and then (if Validate'Result = 2 then not Rule_2 (S))
       and then (if Validate'Result = 3 then not Rule_3 (S))
       and then (if Validate'Result = 4 then not Rule_4 (S))
       and then (if Validate'Result = 5 then not Rule_5 (S))
       and then (if Validate'Result = 6 then not Rule_6 (S))
       and then (if Validate'Result = 7 then not Rule_7 (S))
       and then (if Validate'Result = 8 then not Rule_8 (S))
       and then Validate'Result /= 9;

end Policy;
