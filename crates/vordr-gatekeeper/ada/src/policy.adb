pragma SPARK_Mode (On);

package body Policy is

   function Validate (S : Spec_Input) return Rule_Id is
   begin
      if not Rule_1 (S) then
         return 1;
      elsif not Rule_2 (S) then
         return 2;
      elsif not Rule_3 (S) then
         return 3;
      elsif not Rule_4 (S) then
         return 4;
      elsif not Rule_5 (S) then
         return 5;
      elsif not Rule_6 (S) then
         return 6;
      elsif not Rule_7 (S) then
         return 7;
      elsif not Rule_8 (S) then
         return 8;
      else
         return Allowed_Verdict;
      end if;
   end Validate;

end Policy;
